/**
 * The test file `ferry-conformance` hands to node:test's run() (through
 * entry.mjs, which registers tsx first): it reads what to run from the
 * environment and registers the suite with node:test's own test/describe.
 */
import { describe, test } from 'node:test';
import { conformance, type DescribeFunction, type TestFunction } from './index.ts';
import { adapterFactory } from './kit-adapter.ts';
import { RUN_ENV, type RunSpec } from './run-spec.ts';

const spec = JSON.parse(process.env[RUN_ENV] ?? 'null') as RunSpec | null;
if (!spec) throw new Error(`${RUN_ENV} is not set: this file is run by ferry-conformance`);
const createAdapter = await adapterFactory(spec.adapter);

conformance({
  test: test as unknown as TestFunction,
  describe: describe as unknown as DescribeFunction,
  plugin: spec.plugin,
  adapter: () => createAdapter(spec.config),
  repeat: spec.repeat,
  shareSizeBytes: spec.shareSizeBytes,
  ...(spec.checks ? { checks: spec.checks } : {}),
});
