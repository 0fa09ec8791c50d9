/**
 * ferry-conformance: runs the driver conformance suite against a plugin
 * folder and reports, or writes a new plugin from the template.
 *
 *   ferry-conformance --plugin DIR [--adapter FILE | --adapter-address ADDR] [--config FILE] [--repeat N]
 *                     [--share-size BYTES] [--check ID]... [--json FILE]
 *   ferry-conformance --list
 *   ferry-conformance init DIR [--name NAME] [--kind module|process]
 *
 * The plugin is loaded through ferryd's own loader first; then the suite
 * runs under node:test's run() (node-entry.ts) and each check is printed as
 * it finishes. Exit codes: 0 when no check failed, 1 when one did (or the
 * plugin did not load), 2 for a bad flag, a missing adapter or a bad DIR.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { run } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { formatBytes } from './data.ts';
import { loadPlugin } from './harness.ts';
import { CHECK_IDS, listChecks, splitName, TEARDOWN, type CheckResult } from './index.ts';
import { InitError, initPlugin, type InitKind } from './init.ts';
import { AdapterChoiceError, chooseAdapter, describeChoice, type AdapterChoice } from './kit-adapter.ts';
import { RUN_ENV, type RunSpec } from './run-spec.ts';
import { formatCheck, formatNote, formatSummary, jsonReport, type RunInfo } from './report.ts';

const ENTRY = fileURLToPath(new URL('./entry.mjs', import.meta.url));

/** A path as the user would like to read it: relative below the current dir, absolute elsewhere. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
}

/** A usage problem: printed as one line, exit 2. */
class UsageError extends Error {}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

function bytes(value: string): number {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('must be bytes, e.g. 4194304 or 4MiB');
  const unit = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

interface RunFlags {
  plugin?: string;
  adapter?: string;
  adapterAddress?: string;
  config?: string;
  repeat: number;
  shareSize: number;
  check?: string[];
  json?: string;
  list?: boolean;
}

/** The adapter (kit-adapter.ts); a choice that cannot be made is a usage problem. */
function adapterChoice(flags: RunFlags, pluginDir: string): AdapterChoice {
  if (flags.adapter && flags.adapterAddress) throw new UsageError('--adapter and --adapter-address: pass one of them');
  try {
    return chooseAdapter(pluginDir, flags);
  } catch (err) {
    if (err instanceof AdapterChoiceError) throw new UsageError(err.message);
    throw err;
  }
}

function readConfig(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(resolve(path), 'utf8'));
  } catch (err) {
    throw new UsageError(`--config ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`--config ${path}: the top level must be a JSON object`);
  return parsed as Record<string, unknown>;
}

function writeJson(path: string | undefined, value: unknown): void {
  if (path) writeFileSync(resolve(path), `${JSON.stringify(value, null, 2)}\n`);
}

/** Runs the suite; resolves with the exit code. */
async function runCommand(flags: RunFlags): Promise<number> {
  if (flags.list) {
    for (const { id, title } of listChecks()) process.stdout.write(`${id.padEnd(26)} ${title}\n`);
    return 0;
  }
  if (!flags.plugin) throw new UsageError('--plugin DIR is required (the folder that holds plugin.json)');
  const pluginDir = resolve(flags.plugin);
  const unknown = (flags.check ?? []).filter((id) => !CHECK_IDS.includes(id));
  if (unknown.length > 0) throw new UsageError(`--check ${unknown.join(', ')}: no such check (see --list)`);
  const started = new Date();
  const t0 = performance.now();

  // Load the plugin through ferryd's loader before anything else: a plugin that does not load fails here, with the loader's reason.
  const scratch = mkdtempSync(join(tmpdir(), 'ferry-conformance-'));
  let load;
  try {
    load = await loadPlugin(pluginDir, scratch);
  } catch (err) {
    throw new UsageError(`--plugin ${flags.plugin}: ${(err as Error).message}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const adapter = adapterChoice(flags, pluginDir);
  const info: RunInfo = {
    plugin: { name: load.plugin?.manifest.name ?? '', version: load.plugin?.manifest.version ?? '', apiVersion: load.plugin?.manifest.apiVersion ?? 0, dir: pluginDir },
    adapter: adapter.type === 'module' ? adapter.file : adapter.type === 'address' ? adapter.address : `command: ${adapter.command.join(' ')}`,
    repeat: flags.repeat,
    shareSizeBytes: flags.shareSize,
  };
  const out = (line: string) => process.stdout.write(`${line}\n`);
  if (!load.plugin) {
    const result: CheckResult = { id: 'manifest', name: "the plugin loads through ferryd's loader", status: 'failed', reason: load.failure?.message ?? 'no plugin.json in the folder', call: "ferryd's plugin loader", notes: [], durationMs: 0 };
    out(`ferry-conformance: ${pluginDir}\n`);
    out(formatCheck(result));
    out(`\n${formatSummary([result], performance.now() - t0, CHECK_IDS.length)}`);
    writeJson(flags.json, jsonReport(info, [result], started, performance.now() - t0));
    return 1;
  }
  out(`ferry-conformance: plugin ${info.plugin.name} ${info.plugin.version} (driver API ${info.plugin.apiVersion}) from ${shown(pluginDir)}`);
  out(`${describeChoice(adapter, shown)}; each idempotent call repeated ${flags.repeat} times; test shares of ${formatBytes(flags.shareSize)}\n`);

  const spec: RunSpec = { plugin: pluginDir, adapter, config: readConfig(flags.config), repeat: flags.repeat, shareSizeBytes: flags.shareSize, ...(flags.check ? { checks: flags.check } : {}) };
  process.env[RUN_ENV] = JSON.stringify(spec);
  // Started from inside a node:test file (a vendor's CI, our own tests), run() would see this and refuse to run files.
  delete process.env.NODE_TEST_CONTEXT;
  const results = await runSuite(out);
  const durationMs = performance.now() - t0;
  out(`\n${formatSummary(results, durationMs, CHECK_IDS.length)}`);
  const report = jsonReport(info, results, started, durationMs);
  writeJson(flags.json, report);
  return report.ok ? 0 : 1;
}

/** Runs node-entry under node:test and turns its events into results, printing each as it finishes. */
async function runSuite(out: (line: string) => void): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  let last: CheckResult | undefined;
  let output = '';
  let fileFailure: string | undefined;
  for await (const event of run({ files: [ENTRY], concurrency: 1 })) {
    const data = event.data as { name?: string; nesting?: number; skip?: unknown; message?: string; details?: { duration_ms?: number; error?: unknown } };
    if (event.type === 'test:stderr' || event.type === 'test:stdout') {
      output = (output + String(data.message ?? '')).slice(-8000);
      continue;
    }
    if (event.type === 'test:diagnostic') {
      // A check's notes follow its pass or fail event; the run's own totals (nesting 0) are not notes.
      if (last && data.nesting !== 0) {
        last.notes.push(String(data.message));
        if (results.includes(last)) out(formatNote(String(data.message)));
      }
      continue;
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const [id, title] = splitName(String(data.name ?? ''));
    if (!id || !title) {
      if (event.type === 'test:fail' && data.nesting === 0 && results.length === 0) fileFailure = causeOf(data.details?.error).message;
      continue;
    }
    const durationMs = Math.round(Number(data.details?.duration_ms ?? 0));
    let r: CheckResult;
    if (event.type === 'test:fail') {
      const cause = causeOf(data.details?.error);
      r = { id, name: title, status: 'failed', reason: cause.message, notes: [], durationMs };
      if (cause.call) r.call = cause.call;
    } else if (data.skip !== undefined && data.skip !== false) {
      r = { id, name: title, status: 'skipped', reason: typeof data.skip === 'string' ? data.skip : '', notes: [], durationMs };
    } else r = { id, name: title, status: 'passed', notes: [], durationMs };
    last = r;
    // The teardown is not a check: it is reported only if it failed.
    if (id === TEARDOWN && r.status !== 'failed') continue;
    out(formatCheck(r, results));
    results.push(r);
  }
  if (results.length === 0) {
    out(`the suite did not run: ${fileFailure ?? 'no check reported'}`);
    if (output.trim()) out(output.trim());
  }
  return results;
}

function causeOf(error: unknown): { message: string; call?: string } {
  const e = error as { cause?: unknown; message?: unknown } | undefined;
  const inner = (e?.cause ?? e) as { message?: unknown; call?: unknown } | undefined;
  const message = typeof inner?.message === 'string' ? inner.message : String(inner);
  return typeof inner?.call === 'string' ? { message, call: inner.call } : { message };
}

const program = new Command('ferry-conformance')
  .description("Ferry's driver conformance suite: runs every check through a real ferryd against your plugin, capability-gated")
  .option('--plugin <dir>', 'the plugin folder under test (holds plugin.json)')
  .option('--adapter <file>', 'a module exporting createAdapter(config) (default: conformance-adapter.ts in a module plugin\'s folder)')
  .option('--adapter-address <addr>', 'a ConformanceAdapter gRPC service to use, unix:PATH or host:port (default for a process plugin: the one its command serves, started by the kit)')
  .option('--config <file>', 'a JSON file given to createAdapter (the array to use, credentials, pools)')
  .option('--repeat <n>', 'how many times each idempotent call is repeated', positiveInt, 3)
  .option('--share-size <bytes>', 'the size of each test share, e.g. 4MiB', bytes, 4 * 1024 * 1024)
  .option('--check <id>', 'run only this check (repeatable; see --list)', collect)
  .option('--json <file>', 'also write the result as JSON')
  .option('--list', 'list the checks and exit')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (flags: RunFlags) => {
    process.exitCode = await runCommand(flags);
  });

program
  .command('init')
  .description('write a new plugin folder from the template, with the name filled in')
  .argument('<dir>', 'the new plugin folder (must not exist, or be empty)')
  .option('--name <name>', 'the plugin name (default: from the folder name)')
  .option('--kind <kind>', 'module (a TypeScript module in ferryd) or process (a Python driver.py that ferryd starts)', 'module')
  .option('--no-install', 'do not run npm install in the new folder (module)')
  .action((dir: string, flags: { name?: string; install: boolean; kind: string }) => {
    const r = initPlugin(dir, flags.name, flags.install, flags.kind as InitKind);
    const rel = shown(r.dir);
    if (flags.kind === 'process') {
      process.stdout.write(
        [
          `wrote plugin ${r.name} (kind process) in ${rel}: ${r.files.join(', ')}`,
          'next:',
          `  1. fill in each DriverService method of ${rel}/driver.py (docs/writing-a-driver.md, "The process kind")`,
          `  2. fill in its ConformanceAdapter methods (docs/writing-a-driver.md, "The adapter")`,
          `  3. npx ferry-conformance --plugin ${rel}`,
          '',
        ].join('\n'),
      );
      return;
    }
    const lines = [`wrote plugin ${r.name} in ${rel}: ${r.files.join(', ')}`];
    if (r.install?.ok) lines.push(`installed its dependencies (@ferry/driver-api, @ferry/conformance: file: links to this checkout; run npm install in ${rel} again after moving either)`);
    else if (r.install) lines.push(`npm install in ${rel} failed: ${r.install.detail}`, `run it yourself there before the next steps`);
    else lines.push(`run npm install in ${rel} before the next steps`);
    lines.push(
      'next:',
      `  1. fill in each call of ${rel}/index.ts (docs/writing-a-driver.md, "The contract, call by call")`,
      `  2. fill in ${rel}/conformance-adapter.ts (docs/writing-a-driver.md, "The adapter")`,
      `  3. npm run typecheck --prefix ${rel}`,
      `  4. npx ferry-conformance --plugin ${rel}`,
      '',
    );
    process.stdout.write(lines.join('\n'));
    if (r.install && !r.install.ok) process.exitCode = 1;
  });

// Output piped into `head` and the like: stop quietly when the reader goes away.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof UsageError || err instanceof InitError) {
    process.stderr.write(`ferry-conformance: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
