/**
 * The command's output: one block per check as it finishes (passed, failed
 * with the reason and the call that broke, skipped with why), a summary
 * line, and the machine-readable JSON result.
 */
import type { CheckResult } from './index.ts';

/** What the report says about the run. */
export interface RunInfo {
  plugin: { name: string; version: string; apiVersion: number; dir: string };
  /** The adapter module's path, the ConformanceAdapter address, or "command: ARGV" for a process plugin's own. */
  adapter: string;
  repeat: number;
  shareSizeBytes: number;
}

/** The JSON result `--json FILE` writes. */
export interface JsonReport extends RunInfo {
  ok: boolean;
  startedAt: string;
  durationMs: number;
  summary: { passed: number; failed: number; skipped: number };
  checks: CheckResult[];
}

/** Wide enough for the longest check id (host-path-cancel-phase1-done). */
const ID_WIDTH = 28;
const INDENT = ' '.repeat(ID_WIDTH + 9);

const LABEL: Record<CheckResult['status'], string> = { passed: 'pass', failed: 'FAIL', skipped: 'skip' };

/**
 * The lines for one finished check. A failure with the same reason and call
 * as an earlier one (say, every check after a failed setup) names that one
 * instead of repeating them.
 */
export function formatCheck(r: CheckResult, earlier: CheckResult[] = []): string {
  const previous = earlier.find((e) => e.status === 'failed' && e.reason === r.reason && e.call === r.call);
  const seconds = `${(r.durationMs / 1000).toFixed(1)} s`;
  const lines = [`  ${LABEL[r.status]}  ${r.id.padEnd(ID_WIDTH)} ${r.name}${r.status === 'skipped' ? '' : ` (${seconds})`}`];
  if (r.status === 'skipped') lines.push(`${INDENT}skipped: ${r.reason ?? ''}`);
  if (r.status === 'failed') {
    if (previous) lines.push(`${INDENT}reason: as above (${previous.id})`);
    else {
      lines.push(`${INDENT}reason: ${r.reason ?? ''}`);
      if (r.call) lines.push(`${INDENT}call:   ${r.call}`);
    }
  }
  for (const note of r.notes) lines.push(formatNote(note));
  return lines.join('\n');
}

/** A note line, printed under its check. */
export function formatNote(note: string): string {
  return `${INDENT}note:   ${note}`;
}

/** Counts by status. */
export function summarize(results: CheckResult[]): JsonReport['summary'] {
  return {
    passed: results.filter((r) => r.status === 'passed').length,
    failed: results.filter((r) => r.status === 'failed').length,
    skipped: results.filter((r) => r.status === 'skipped').length,
  };
}

/** The last line. `total` is how many checks the suite has, to say when only some ran. */
export function formatSummary(results: CheckResult[], durationMs: number, total = results.length): string {
  const s = summarize(results);
  const verdict =
    s.failed > 0
      ? 'the driver breaks the contract'
      : results.length < total
        ? `no check failed, but only ${results.length} of the ${total} checks ran`
        : 'the driver keeps the contract (for every capability it claims)';
  return `${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped in ${(durationMs / 1000).toFixed(1)} s: ${verdict}`;
}

/** The JSON result. */
export function jsonReport(info: RunInfo, results: CheckResult[], startedAt: Date, durationMs: number): JsonReport {
  const summary = summarize(results);
  return { ...info, ok: summary.failed === 0 && results.length > 0, startedAt: startedAt.toISOString(), durationMs: Math.round(durationMs), summary, checks: results };
}
