/**
 * The ferry-conformance command, run as `npx ferry-conformance` runs it
 * (through its bin): the readable report, the JSON result, the exit codes,
 * the plugin loaded through ferryd's loader first, and `init`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { serveAdapter } from '../../plugins/conformance/adapter-server.ts';
import { CHECK_IDS } from '../../plugins/conformance/index.ts';
import type { JsonReport } from '../../plugins/conformance/report.ts';
import { ROOT, tempDir } from '../helpers.ts';

const BIN = join(ROOT, 'bin/ferry-conformance.mjs');
const SIM_ADAPTER = join(ROOT, 'plugins/simulator/conformance-adapter.ts');
const { createAdapter: simulatorAdapter } = await import('../../plugins/simulator/conformance-adapter.ts');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function ferryConformance(args: string[]): Promise<Ran> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Runs a command to its end; a failure throws with its output. */
async function run(command: string, args: string[], cwd: string): Promise<void> {
  await promisify(execFile)(command, args, { cwd, maxBuffer: 16 * 1024 * 1024 }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`${command} ${args.join(' ')} in ${cwd} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  });
}

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as JsonReport;

describe('ferry-conformance', () => {
  test('--list names every check', async () => {
    const r = await ferryConformance(['--list']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]),
      CHECK_IDS,
    );
  });

  test('passes the simulator plugin with its own adapter (found next to plugin.json), exit 0, and writes the JSON result', async (t) => {
    const json = join(tempDir(t), 'result.json');
    const r = await ferryConformance(['--plugin', 'plugins/simulator', '--share-size', '2MiB', '--check', 'happy-path', '--check', 'preserve-snapshots', '--json', json]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ferry-conformance: plugin simulator 0\.1\.0 \(driver API 1\) from plugins\/simulator$/m);
    assert.match(r.stdout, /^adapter plugins\/simulator\/conformance-adapter\.ts; each idempotent call repeated 3 times; test shares of 2 MiB$/m);
    assert.match(r.stdout, /^ {2}pass {2}happy-path +start, continue and complete move the share/m);
    assert.match(r.stdout, /^ {2}skip {2}preserve-snapshots .*\n +skipped: driver does not claim preserve_snapshots$/m);
    assert.match(r.stdout, /^2 passed, 0 failed, 1 skipped in [\d.]+ s: no check failed, but only 3 of the \d+ checks ran$/m);
    const report = readJson(json);
    assert.equal(report.ok, true);
    assert.deepEqual(report.summary, { passed: 2, failed: 0, skipped: 1 });
    assert.deepEqual(
      report.checks.map((c) => [c.id, c.status]),
      [
        ['manifest', 'passed'],
        ['happy-path', 'passed'],
        ['preserve-snapshots', 'skipped'],
      ],
    );
    assert.equal(report.checks[2]!.reason, 'driver does not claim preserve_snapshots');
    assert.ok(report.checks.every((c) => typeof c.durationMs === 'number' && typeof c.name === 'string' && c.name.length > 0));
    assert.equal(report.plugin.name, 'simulator');
    assert.equal(report.shareSizeBytes, 2 * 1024 * 1024);
  });

  test('reports a planted defect as FAIL with the reason and the call that broke, exit 1', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'adapter.json');
    writeFileSync(config, JSON.stringify({ driverOptions: { defect: 'cancel-leaves-destination' } }));
    const json = join(dir, 'result.json');
    const r = await ferryConformance(['--plugin', 'test/conformance/fixtures/broken', '--adapter', SIM_ADAPTER, '--config', config, '--share-size', '2MiB', '--check', 'cancel-phase1-done', '--json', json]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^ {2}FAIL {2}cancel-phase1-done .*\n +reason: after CANCELLED: the destination backend beta still holds job:mig-/m);
    assert.match(r.stdout, /the driver breaks the contract$/m);
    const report = readJson(json);
    assert.equal(report.ok, false);
    const check = report.checks.find((c) => c.id === 'cancel-phase1-done');
    assert.equal(check?.status, 'failed');
    assert.match(check.reason ?? '', /still holds job:mig-/);
  });

  test('a plugin that does not load fails the manifest check with the loader’s reason, exit 1, JSON written', async (t) => {
    const dir = tempDir(t);
    const plugin = join(dir, 'bad');
    mkdirSync(plugin);
    writeFileSync(join(plugin, 'plugin.json'), JSON.stringify({ name: 'bad', version: '1.0.0', apiVersion: 99 }));
    writeFileSync(join(plugin, 'conformance-adapter.ts'), 'export function createAdapter() { throw new Error("unused"); }\n');
    const json = join(dir, 'result.json');
    const r = await ferryConformance(['--plugin', plugin, '--json', json]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAIL {2}manifest .*\n +reason: PLUGIN_API_VERSION_MISMATCH: plugin bad .* is written for driver API 99; this ferryd speaks 1\n +call: {3}ferryd's plugin loader/);
    assert.deepEqual(
      readJson(json).checks.map((c) => [c.id, c.status]),
      [['manifest', 'failed']],
    );
  });

  test('without an adapter it says where to write one, exit 2', async (t) => {
    const plugin = join(tempDir(t), 'noadapter');
    mkdirSync(plugin);
    writeFileSync(join(plugin, 'plugin.json'), JSON.stringify({ name: 'noadapter', version: '1.0.0', apiVersion: 1, main: 'index.mjs' }));
    writeFileSync(join(plugin, 'index.mjs'), 'export function createDriver() { return {}; }\n');
    const r = await ferryConformance(['--plugin', plugin]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ferry-conformance: no adapter: write .*noadapter\/conformance-adapter\.ts \(see docs\/writing-a-driver\.md, "The adapter"\) or pass --adapter FILE$/m);
  });

  test('--adapter-address uses the ConformanceAdapter service there, and says so', async (t) => {
    const server = await serveAdapter(simulatorAdapter, `unix:${join(tempDir(t), 'adapter.sock')}`);
    t.after(() => server.close());
    const json = join(tempDir(t), 'result.json');
    const r = await ferryConformance(['--plugin', 'plugins/simulator', '--adapter-address', server.address, '--share-size', '2MiB', '--check', 'happy-path', '--json', json]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^adapter: the ConformanceAdapter service at ${server.address}; each idempotent call repeated 3 times`, 'm'));
    const report = readJson(json);
    assert.equal(report.adapter, server.address);
    assert.deepEqual(report.summary, { passed: 2, failed: 0, skipped: 0 });
  });

  test('an endpoint plugin without --adapter-address is told to pass one, exit 2; --adapter with --adapter-address is refused', async (t) => {
    const plugin = join(tempDir(t), 'remote');
    mkdirSync(plugin);
    // index.mjs: loadable by a loader that does not know kinds yet, so that the adapter choice is what is tested.
    writeFileSync(join(plugin, 'plugin.json'), JSON.stringify({ name: 'remote', version: '1.0.0', apiVersion: 1, kind: 'endpoint', main: 'index.mjs' }));
    writeFileSync(join(plugin, 'index.mjs'), 'export function createDriver() { return {}; }\n');
    const r = await ferryConformance(['--plugin', plugin]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /^ferry-conformance: the plugin is of kind endpoint: pass --adapter-address ADDR, where its ConformanceAdapter service is served/m);
    const both = await ferryConformance(['--plugin', plugin, '--adapter', SIM_ADAPTER, '--adapter-address', 'unix:/nowhere']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--adapter and --adapter-address: pass one of them/);
  });

  test('bad flags and unknown checks are usage errors, exit 2', async () => {
    assert.equal((await ferryConformance(['--repeat', '0', '--plugin', 'plugins/simulator'])).code, 2);
    const r = await ferryConformance(['--plugin', 'plugins/simulator', '--check', 'nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--check nope: no such check \(see --list\)/);
  });

  test('init writes a plugin package that imports the driver API by name; moved elsewhere and reinstalled, it type-checks and ferryd\u2019s loader loads it', async (t) => {
    const base = tempDir(t);
    const first = join(base, 'Acme Array');
    const init = await ferryConformance(['init', first]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /wrote plugin acme-array in .*: conformance-adapter\.ts, index\.ts, plugin\.json, package\.json, tsconfig\.json\ninstalled its dependencies/);
    assert.equal(JSON.parse(readFileSync(join(first, 'plugin.json'), 'utf8')).name, 'acme-array');
    const index = readFileSync(join(first, 'index.ts'), 'utf8');
    assert.match(index, /from '@ferry\/driver-api';/);
    assert.doesNotMatch(index, /from '\.|plugins\/api/, 'no import reaches into the checkout by path');
    assert.match(index, /acme-array: implement/);
    const pkg = JSON.parse(readFileSync(join(first, 'package.json'), 'utf8'));
    assert.equal(pkg.dependencies['@ferry/driver-api'], `file:${join(ROOT, 'plugins', 'api')}`);
    assert.equal(lstatSync(join(first, 'node_modules')).isSymbolicLink(), false, 'node_modules is the plugin\u2019s own, not a link to Ferry\u2019s');
    const again = await ferryConformance(['init', first]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /is not empty; init writes a new plugin folder/);

    // Moved one level deeper (every relative link it had would now be wrong), then reinstalled, as the guide says.
    const dir = join(base, 'vendor', 'acme');
    mkdirSync(join(base, 'vendor'));
    renameSync(first, dir);
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], dir);
    await run('npm', ['run', '-s', 'typecheck'], dir);

    const r = await ferryConformance(['--plugin', dir, '--check', 'happy-path']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /pass {2}manifest .*\n +note: {3}plugin acme-array 0\.1\.0 loads; createDriver was not tried: adapter setup failed: acme-array: implement setup in conformance-adapter\.ts/);
    assert.match(r.stdout, /FAIL {2}happy-path .*\n +reason: not run: adapter setup failed: acme-array: implement setup/);
  });

  test('init --no-install writes the folder and says to run npm install', async (t) => {
    const dir = join(tempDir(t), 'quiet');
    const init = await ferryConformance(['init', dir, '--no-install']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /\nrun npm install in .*quiet before the next steps\n/);
    assert.equal(existsSync(join(dir, 'node_modules')), false);
  });
});
