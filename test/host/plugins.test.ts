/** The plugin host: each load step fails with its own code, and one bad plugin never stops the others. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_DEADLINES } from '../../host/deadlines.ts';
import { silentLog } from '../../lib/log.ts';
import { createBackendDriver, scanPlugins, type PluginScan } from '../../host/plugins.ts';
import { pluginsDir, tempDir } from '../helpers.ts';

const manifest = (name: string, extra: object = {}) => JSON.stringify({ name, version: '1.0.0', apiVersion: 1, main: 'index.mjs', ...extra });
const METHODS = ['describe', 'checkCompatibility', 'start', 'continue', 'complete', 'cancel', 'progress'];
const driverModule = (body: string) => `export function createDriver(ctx) { ${body} }\n`;
const fullDriver = `return { capabilities: () => ({ writable: true, nondisruptive: true, preserveMetadata: true, preserveSnapshots: false }), ${METHODS.map((m) => `${m}: async () => ({})`).join(', ')} };`;

async function scan(t: Parameters<typeof tempDir>[0], plugins: Record<string, Record<string, string>>, real: string[] = []): Promise<PluginScan> {
  return scanPlugins(pluginsDir(tempDir(t), real, plugins), { timeoutMs: 300, log: silentLog() });
}

const context = { daemonAddress: '127.0.0.1:1', deadlines: DEFAULT_DEADLINES, timeoutMs: 300, log: silentLog() };

describe('scanPlugins', () => {
  test('loads good plugins, skips folders without plugin.json, and records each failure under its own code', async (t) => {
    const result = await scan(
      t,
      {
        ok: { 'plugin.json': manifest('ok'), 'index.mjs': driverModule(fullDriver) },
        good: { 'plugin.json': manifest('good'), 'index.mjs': driverModule(fullDriver) },
        notaplugin: { 'README.md': 'nothing here' },
        nofactory: { 'plugin.json': manifest('nofactory'), 'index.mjs': 'export const x = 1;\n' },
        badname: { 'plugin.json': manifest('Bad Name') },
        noversion: { 'plugin.json': JSON.stringify({ name: 'noversion', apiVersion: 1 }) },
        dup: { 'plugin.json': manifest('good'), 'index.mjs': driverModule(fullDriver) },
        missingfile: { 'plugin.json': manifest('missingfile', { main: 'nope.mjs' }) },
      },
      ['simulator'],
    );
    assert.deepEqual([...result.plugins.keys()].sort(), ['ok', 'simulator']);
    const codes = Object.fromEntries([...result.failures].map(([k, v]) => [k, v.code]));
    assert.deepEqual(codes, {
      nofactory: 'PLUGIN_FACTORY_MISSING',
      badname: 'PLUGIN_MANIFEST_INVALID',
      noversion: 'PLUGIN_MANIFEST_INVALID',
      good: 'PLUGIN_NAME_DUPLICATE',
      missingfile: 'PLUGIN_IMPORT_FAILED',
    });
    assert.match(result.failures.get('badname')!.message, /"name" must be 1-64 lower-case/);
    assert.match(result.failures.get('noversion')!.message, /"version" must be a non-empty string/);
    assert.match(result.failures.get('good')!.message, /used by folders dup, good; none of them is loaded/);
  });

  test('with `only`, runs no code of a plugin no backend uses', async (t) => {
    const dir = pluginsDir(tempDir(t), [], {
      used: { 'plugin.json': manifest('used'), 'index.mjs': driverModule(fullDriver) },
      unused: { 'plugin.json': manifest('unused'), 'index.mjs': "throw new Error('imported');\n" },
    });
    const result = await scanPlugins(dir, { timeoutMs: 300, log: silentLog(), only: new Set(['used']) });
    assert.deepEqual([...result.plugins.keys()], ['used']);
    assert.equal(result.failures.size, 0);
  });

  test('an unreadable plugins dir is an error naming the dir', async (t) => {
    await assert.rejects(scanPlugins(`${tempDir(t)}/absent`, { timeoutMs: 100, log: silentLog() }), /PLUGIN_DIR_UNREADABLE: cannot read plugins dir .*absent/);
  });
});

describe('createBackendDriver', () => {
  const cases: [string, string, RegExp][] = [
    ['throws', "throw new Error('no array');", /DRIVER_CREATE_FAILED: .*no array/],
    ['hangs', 'return new Promise(() => {});', /DRIVER_CREATE_TIMEOUT: .*did not return within 300 ms/],
    ['returns half a driver', 'return { capabilities: () => ({}), start() {} };', /DRIVER_SHAPE_INVALID: .*lacks describe, checkCompatibility, continue/],
    ['reports malformed capabilities', `return { ...(${`(() => { ${fullDriver} })()`}), capabilities: () => ({ writable: 'yes' }) };`, /DRIVER_SHAPE_INVALID: .*capabilities\.writable must be a boolean/],
  ];
  for (const [what, body, message] of cases) {
    test(`a factory that ${what} fails the backend with a coded error`, async (t) => {
      const result = await scan(t, { p: { 'plugin.json': manifest('p'), 'index.mjs': driverModule(body) } });
      await assert.rejects(createBackendDriver({ name: 'b1', plugin: 'p', options: {} }, result, context), message);
    });
  }

  test('a backend naming a plugin that failed to load gets that plugin\'s error', async (t) => {
    const result = await scan(t, { p: { 'plugin.json': manifest('p', { apiVersion: 2 }) } });
    await assert.rejects(createBackendDriver({ name: 'b1', plugin: 'p', options: {} }, result, context), /PLUGIN_API_VERSION_MISMATCH: .*written for driver API 2; this ferryd speaks 1/);
  });

  test('hands the factory the backend name, its options and the daemon address', async (t) => {
    const result = await scan(t, { p: { 'plugin.json': manifest('p'), 'index.mjs': driverModule(`globalThis.__ferrySeen = { backend: ctx.backend, options: ctx.options, address: ctx.daemonAddress }; ${fullDriver}`) } });
    const driver = await createBackendDriver({ name: 'b1', plugin: 'p', options: { k: 1 } }, result, context);
    assert.deepEqual((globalThis as Record<string, unknown>).__ferrySeen, { backend: 'b1', options: { k: 1 }, address: '127.0.0.1:1' });
    assert.equal(driver.plugin.name, 'p');
    // A driver answering `{}` to describe is caught by the guard, not passed on.
    await assert.rejects(driver.describe(), /DRIVER_ERROR|invalid describe result/);
  });
});
