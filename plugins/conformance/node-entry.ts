/**
 * The test file `ferry-conformance` hands to node:test's run() (through
 * entry.mjs, which registers tsx first): it reads what to run from the
 * environment and registers the suite with node:test's own test/describe.
 */
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { AdapterModule } from './adapter.ts';
import { conformance, type DescribeFunction, type TestFunction } from './index.ts';
import { RUN_ENV, type RunSpec } from './run-spec.ts';

const spec = JSON.parse(process.env[RUN_ENV] ?? 'null') as RunSpec | null;
if (!spec) throw new Error(`${RUN_ENV} is not set: this file is run by ferry-conformance`);
const mod = (await import(pathToFileURL(spec.adapter).href)) as Partial<AdapterModule>;
if (typeof mod.createAdapter !== 'function') throw new Error(`${spec.adapter} does not export a function named createAdapter`);
const createAdapter = mod.createAdapter;

conformance({
  test: test as unknown as TestFunction,
  describe: describe as unknown as DescribeFunction,
  plugin: spec.plugin,
  adapter: () => createAdapter(spec.config),
  repeat: spec.repeat,
  shareSizeBytes: spec.shareSizeBytes,
  ...(spec.checks ? { checks: spec.checks } : {}),
});
