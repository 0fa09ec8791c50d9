/**
 * What a scenario hands back, and how it is shown: Markdown tables for the
 * terminal and the README, target checks, one JSON file per scenario under
 * bench/results/, and a description of the machine the numbers came from.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where results go (git-ignored). */
export const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

/** A table: a header row and data rows, all cells already formatted. */
export interface Table {
  title: string;
  header: string[];
  rows: string[][];
  /** Lines printed under the table (what a column means, caveats). */
  notes?: string[];
}

/** One line of the final summary: a headline figure next to what it is measured against. */
export interface SummaryRow {
  scenario: string;
  measure: string;
  ferry: string;
  baseline: string;
  ratio: string;
}

/** A target from the issue and what this run measured for it. */
export interface TargetCheck {
  target: string;
  measured: string;
  /** null: not measured in this run (e.g. --quick leaves the size out). */
  met: boolean | null;
}

/** What a scenario returns to the runner. */
export interface ScenarioReport {
  tables: Table[];
  summary: SummaryRow[];
  targets: TargetCheck[];
  /** Everything measured; written to the scenario's JSON file. */
  data: unknown;
}

/** How the runner calls a scenario. */
export interface BenchContext {
  /** Small versions of everything (under two minutes in all). */
  quick: boolean;
  /** A time stamp shared by every file of this run. */
  stamp: string;
  /** A scratch dir on the same disk as the repository's temp files; removed by the runner. */
  scratch: string;
  /** Prints a progress line. */
  log(line: string): void;
}

/** A benchmark scenario. */
export interface Scenario {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<ScenarioReport>;
}

/** Formats a table as GitHub Markdown, columns padded so it also reads as plain text. */
export function markdown(table: Table, options: { title?: boolean } = {}): string {
  const all = [table.header, ...table.rows];
  const widths = table.header.map((_, i) => Math.max(3, ...all.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  const out = [line(table.header), sep, ...table.rows.map(line)];
  if (options.title !== false) out.unshift(`**${table.title}**`, '');
  if (table.notes?.length) out.push('', ...table.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

/** Writes `data` as bench/results/<name>-<stamp>.json; returns the path. */
export function writeResult(name: string, stamp: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** The machine the numbers come from. */
export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  disk: string;
  kernel: string;
  node: string;
  commit: string;
  hypervisor: string;
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** Describes this machine: CPU, memory, the disk under the scratch dir, kernel, Node and the commit measured. */
export function describeMachine(scratch: string): Machine {
  const df = sh('df', ['-T', scratch]).split('\n')[1]?.split(/\s+/) ?? [];
  const fs = statfsSync(scratch);
  const dev = df[0] ?? '?';
  const driver = path.basename(sh('readlink', ['-f', `/sys/block/${path.basename(dev).replace(/\d+$/, '')}/device/driver`]));
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']) ? ' (with uncommitted changes)' : '';
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    disk: `${df[1] ?? '?'} on ${dev}${driver ? ` (${driver})` : ''}, ${Math.round((fs.blocks * fs.bsize) / 2 ** 30)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    commit: `${sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']) || 'unknown'}${dirty}`,
    hypervisor: /^flags.*\bhypervisor\b/m.test(cpuinfo) ? 'virtual machine' : 'bare metal (no hypervisor flag)',
  };
}

/** "1.23" with `digits` decimals, or "-" for a missing value. */
export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

/** A ratio as "12x" / "0.85x" / "-". */
export function ratio(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value >= 100 ? `${Math.round(value)}x` : value >= 10 ? `${value.toFixed(0)}x` : `${value.toFixed(2)}x`;
}

/** Bytes as MiB or GiB. */
export function size(bytes: number): string {
  return bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(2)} GiB` : bytes >= 2 ** 20 ? `${+(bytes / 2 ** 20).toFixed(1)} MiB` : `${+(bytes / 1024).toFixed(0)} KiB`;
}
