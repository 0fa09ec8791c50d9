/**
 * Ferry's driver conformance kit, as a library: `conformance({ test, plugin,
 * adapter })` registers every check with the test runner it is given
 * (node:test's `test` by default), like abstract-level's
 * `suite({ test, factory })`. Each check runs through a real ferryd child
 * process driving two backends with the plugin, plus direct calls to the
 * driver where the engine's calling pattern after a crash is the point.
 *
 *   import { test } from 'node:test';
 *   import { conformance } from '@ferry/conformance';
 *   import { createAdapter } from './conformance-adapter.ts';
 *   conformance({ test, plugin: new URL('.', import.meta.url).pathname, adapter: () => createAdapter({}) });
 *
 * The command (`ferry-conformance`, main.ts) runs this same suite.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe as nodeDescribe, test as nodeTest } from 'node:test';
import type { ConformanceAdapter } from './adapter.ts';
import { CHECKS, type Check } from './checks/index.ts';
import { CheckContext, type KitSettings } from './context.ts';
import { CheckFailure, CheckSkipped, describeError } from './failure.ts';
import { DEFAULT_TIMEOUTS, Harness, HarnessError, loadPlugin, type Timeouts } from './harness.ts';

export type { AdapterBackend, AdapterModule, AdapterSetup, ConformanceAdapter, ShareLocation } from './adapter.ts';
export type { Timeouts } from './harness.ts';
export { CheckFailure, CheckSkipped } from './failure.ts';

/** What a check gets from the runner; node:test's TestContext fits. */
export interface RunnerContext {
  /** Marks the check skipped with the reason. */
  skip(message?: string): void;
  /** A line of output attached to the check (optional). */
  diagnostic?(message: string): void;
}

/** Registers a test; node:test's `test` fits. The function rejects when the check fails. */
export type TestFunction = (name: string, fn: (t: RunnerContext) => Promise<void>) => unknown;

/** Groups tests; node:test's `describe` fits. */
export type DescribeFunction = (name: string, fn: () => void) => unknown;

/** What `conformance` takes. */
export interface ConformanceOptions {
  /** The plugin folder under test (holds plugin.json). */
  plugin: string;
  /** Returns the adapter for the plugin's array. Called once per run. */
  adapter: () => ConformanceAdapter | Promise<ConformanceAdapter>;
  /** Registers each check. Default: node:test's `test`. */
  test?: TestFunction;
  /** Groups the checks under one name. Default: node:test's `describe` when `test` is defaulted too, else none. */
  describe?: DescribeFunction;
  /** How many times each idempotent call is repeated. Default 3. */
  repeat?: number;
  /** The size of each test share. Default 4 MiB. */
  shareSizeBytes?: number;
  /** How long a bandwidth-capped copy should take (to hold a migration in IN_PROGRESS). Default 2 s. */
  slowCopySeconds?: number;
  /** Waits, in ms. */
  timeouts?: Partial<Timeouts>;
  /** Run only these checks (by id; `manifest` always runs). Default: all. */
  checks?: string[];
}

/** The id of the check that loads the plugin. */
export const MANIFEST_CHECK = 'manifest';
/** The id of the last test, which stops everything (not a check). */
export const TEARDOWN = 'teardown';

/** Every check id, in running order. */
export const CHECK_IDS: readonly string[] = [MANIFEST_CHECK, ...CHECKS.map((c) => c.id)];

/** Every check's id and title, in running order. */
export function listChecks(): { id: string; title: string }[] {
  return [{ id: MANIFEST_CHECK, title: MANIFEST_TITLE }, ...CHECKS.map(({ id, title }) => ({ id, title }))];
}

const MANIFEST_TITLE = "the plugin loads through ferryd's loader: manifest, driver API version, createDriver, and a driver of the right shape for both backends";
const TEARDOWN_TITLE = 'stops ferryd, the drivers and the adapter';

/** The test name of a check: "<id>: <title>". */
export function testName(id: string, title: string): string {
  return `${id}: ${title}`;
}

/** Registers the suite with the runner. */
export function conformance(options: ConformanceOptions): void {
  const settings = settingsFrom(options);
  const test = options.test ?? (nodeTest as unknown as TestFunction);
  const describe = options.describe ?? (options.test ? undefined : (nodeDescribe as unknown as DescribeFunction));
  if (options.checks) {
    const unknown = options.checks.filter((id) => !CHECK_IDS.includes(id));
    if (unknown.length > 0) throw new TypeError(`unknown check ${unknown.join(', ')} (known: ${CHECK_IDS.join(', ')})`);
  }
  const selected = CHECKS.filter((c) => !options.checks || options.checks.includes(c.id));

  let harness: Promise<Harness> | undefined;
  const open = () => (harness ??= Harness.open({ plugin: options.plugin, adapter: options.adapter, timeouts: settings.timeouts }));
  // Checks share one ferryd and one array: run them one at a time whatever the runner does.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = (fn: () => Promise<void>) => {
    const run = queue.then(fn);
    queue = run.catch(() => undefined);
    return run;
  };

  const register = () => {
    test(testName(MANIFEST_CHECK, MANIFEST_TITLE), (t) => serial(() => manifestCheck(options.plugin, open, t)));
    for (const check of selected) test(testName(check.id, check.title), (t) => serial(() => runCheck(check, open, settings, t)));
    test(testName(TEARDOWN, TEARDOWN_TITLE), () =>
      serial(async () => {
        const h = await harness?.catch(() => undefined);
        await h?.close();
      }),
    );
  };
  if (describe) describe(`ferry conformance: ${basename(options.plugin)}`, register);
  else register();
}

function settingsFrom(options: ConformanceOptions): KitSettings {
  const repeat = options.repeat ?? 3;
  if (!Number.isInteger(repeat) || repeat < 1) throw new TypeError(`repeat must be a whole number of at least 1, got ${String(repeat)}`);
  const shareSizeBytes = options.shareSizeBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(shareSizeBytes) || shareSizeBytes < 64 * 1024) throw new TypeError(`shareSizeBytes must be a whole number of at least 65536, got ${String(shareSizeBytes)}`);
  const slowCopySeconds = options.slowCopySeconds ?? 2;
  if (!(slowCopySeconds > 0)) throw new TypeError(`slowCopySeconds must be above 0, got ${String(slowCopySeconds)}`);
  if (typeof options.plugin !== 'string' || options.plugin === '') throw new TypeError('plugin must be the path of the plugin folder');
  if (typeof options.adapter !== 'function') throw new TypeError('adapter must be a function returning the ConformanceAdapter');
  return { repeat, shareSizeBytes, slowCopySeconds, timeouts: { ...DEFAULT_TIMEOUTS, ...options.timeouts } };
}

async function runCheck(check: Check, open: () => Promise<Harness>, settings: KitSettings, t: RunnerContext): Promise<void> {
  let h: Harness;
  try {
    h = await open();
  } catch (err) {
    throw new CheckFailure(`not run: ${describeError(err)}`, err instanceof HarnessError && err.stage === 'setup' ? 'adapter.setup' : undefined);
  }
  const gate = check.gate?.(h);
  if (gate) {
    t.skip(gate);
    return;
  }
  const c = new CheckContext(h, settings);
  try {
    await check.run(c);
  } catch (err) {
    if (err instanceof CheckSkipped) {
      t.skip(err.message);
      return;
    }
    if (err instanceof CheckFailure) throw err;
    throw new CheckFailure(`the check stopped on an unexpected error: ${describeError(err)}`);
  } finally {
    await c.cleanup();
    for (const note of c.notes) t.diagnostic?.(note);
  }
}

/** The manifest check: ferryd's loader on the plugin folder, then createDriver for both backends (done by the harness). */
async function manifestCheck(plugin: string, open: () => Promise<Harness>, t: RunnerContext): Promise<void> {
  let h: Harness | undefined;
  let problem: unknown;
  try {
    h = await open();
  } catch (err) {
    problem = err;
  }
  if (h) {
    const m = h.load.plugin.manifest;
    t.diagnostic?.(`plugin ${m.name} ${m.version}, driver API ${m.apiVersion}; createDriver made drivers for ${h.source.name} and ${h.destination.name}`);
    return;
  }
  if (problem instanceof HarnessError && problem.stage === 'load') throw new CheckFailure(problem.message, "ferryd's plugin loader");
  if (problem instanceof HarnessError && problem.stage === 'driver') throw new CheckFailure(problem.message, 'createDriver');
  const tried = problem instanceof HarnessError && problem.stage === 'daemon' ? 'createDriver made drivers for both backends, but' : 'createDriver was not tried:';
  // Setup failed after the plugin loaded, or before we could tell: load it on its own to judge the manifest.
  const scratch = mkdtempSync(join(tmpdir(), 'ferry-conformance-'));
  try {
    const load = await loadPlugin(plugin, scratch);
    if (!load.plugin) throw new CheckFailure(`the plugin did not load: ${load.failure?.message ?? 'no plugin.json in the folder'}`, "ferryd's plugin loader");
    t.diagnostic?.(`plugin ${load.plugin.manifest.name} ${load.plugin.manifest.version} loads; ${tried} ${describeError(problem)}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** One check's outcome. */
export interface CheckResult {
  id: string;
  /** The check's title. */
  name: string;
  status: 'passed' | 'failed' | 'skipped';
  /** Why it failed or was skipped. */
  reason?: string;
  /** The driver or API call that broke, when one did. */
  call?: string;
  /** Lines the check reported (figures, what was not exercised, clean-up problems). */
  notes: string[];
  durationMs: number;
}

/**
 * A runner that records results instead of failing: pass `collector.test`
 * as `test`, then await `collector.results()`. Checks run one after another.
 * The teardown is left out of the results unless it failed.
 */
export function collectResults(): { test: TestFunction; results(): Promise<CheckResult[]> } {
  const results: CheckResult[] = [];
  let chain: Promise<void> = Promise.resolve();
  const test: TestFunction = (name, fn) => {
    chain = chain.then(async () => {
      const [id = name, title = name] = splitName(name);
      const notes: string[] = [];
      let skipped: string | undefined;
      const t: RunnerContext = { skip: (m) => void (skipped = m ?? ''), diagnostic: (m) => void notes.push(m) };
      const t0 = performance.now();
      let result: CheckResult;
      try {
        await fn(t);
        result = skipped === undefined ? { id, name: title, status: 'passed', notes, durationMs: 0 } : { id, name: title, status: 'skipped', reason: skipped, notes, durationMs: 0 };
      } catch (err) {
        result = { id, name: title, status: 'failed', reason: describeError(err), notes, durationMs: 0 };
        const call = (err as { call?: unknown })?.call;
        if (typeof call === 'string') result.call = call;
      }
      result.durationMs = Math.round(performance.now() - t0);
      if (id !== TEARDOWN || result.status === 'failed') results.push(result);
    });
  };
  return { test, results: async () => (await chain, results) };
}

/** "<id>: <title>" back into its parts. */
export function splitName(name: string): [string, string] | [] {
  const m = /^([a-z0-9-]+): (.*)$/s.exec(name);
  return m ? [m[1]!, m[2]!] : [];
}
