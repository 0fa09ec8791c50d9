/** The daemon's configuration: sources, precedence, and one-line errors that name the setting. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, DEFAULT_PLUGINS_DIR, loadConfig, SETTING_KEYS } from '../../daemon/config.ts';
import { DEFAULT_ENGINE_OPTIONS } from '../../daemon/options.ts';
import { ROOT, tempDir } from '../helpers.ts';

describe('loadConfig', () => {
  test('defaults to loopback, ./ferry-data, the project plugins and an embedded simulator of three backends on two arrays, each served by the simulator plugin', () => {
    const c = loadConfig({}, {}, '/srv/x');
    assert.equal(c.listen, '127.0.0.1:50051');
    assert.equal(c.dataDir, '/srv/x/ferry-data');
    assert.equal(c.pluginsDir, DEFAULT_PLUGINS_DIR);
    assert.equal(c.simulator.embedded, true);
    assert.deepEqual(c.backends.map((b) => [b.name, b.plugin]), [['alpha', 'simulator'], ['beta', 'simulator'], ['gamma', 'simulator']]);
    assert.deepEqual(c.engine, DEFAULT_ENGINE_OPTIONS);
  });

  test('flags beat environment variables, which beat the config file', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'f.json');
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:1', dataDir: 'from-file', logLevel: 'warn' }));
    const fromFile = loadConfig({ config: file }, {}, '/cwd');
    assert.equal(fromFile.listen, '127.0.0.1:1');
    assert.equal(fromFile.dataDir, join(dir, 'from-file'), 'a path in the file is relative to the file');
    assert.equal(fromFile.logLevel, 'warn');
    const fromEnv = loadConfig({}, { FERRY_CONFIG: file, FERRY_LISTEN: '127.0.0.1:2', FERRY_DATA_DIR: 'env-dir' }, '/cwd');
    assert.equal(fromEnv.listen, '127.0.0.1:2');
    assert.equal(fromEnv.dataDir, '/cwd/env-dir');
    const fromFlags = loadConfig({ config: file, listen: 'unix:/tmp/f.sock' }, { FERRY_LISTEN: '127.0.0.1:2' }, '/cwd');
    assert.equal(fromFlags.listen, 'unix:/tmp/f.sock');
  });

  test('serves no metrics unless asked; --metrics-listen beats FERRY_METRICS_LISTEN, which beats metricsListen in the file', (t) => {
    assert.equal(loadConfig({}, {}, '/cwd').metricsListen, null);
    const file = join(tempDir(t), 'f.json');
    writeFileSync(file, JSON.stringify({ metricsListen: '127.0.0.1:9101' }));
    assert.equal(loadConfig({ config: file }, {}).metricsListen, '127.0.0.1:9101');
    assert.equal(loadConfig({ config: file }, { FERRY_METRICS_LISTEN: '[::1]:9102' }).metricsListen, '[::1]:9102');
    assert.equal(loadConfig({ config: file, metricsListen: '0.0.0.0:0' }, { FERRY_METRICS_LISTEN: '[::1]:9102' }).metricsListen, '0.0.0.0:0');
  });

  test('rejects a metrics address that is not HOST:PORT in one line naming where it came from', () => {
    assert.throws(() => loadConfig({ metricsListen: 'localhost' }, {}), (err: Error) => err instanceof ConfigError && err.message === '--metrics-listen: metricsListen "localhost" must be HOST:PORT (port 0-65535)');
    assert.throws(() => loadConfig({}, { FERRY_METRICS_LISTEN: '127.0.0.1:65536' }), (err: Error) => err instanceof ConfigError && err.message === 'FERRY_METRICS_LISTEN: metricsListen "127.0.0.1:65536" must be HOST:PORT (port 0-65535)');
  });

  test('derives one simulator backend per array backend when none are configured', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'f.json');
    const pools = [{ name: 'p', capacityBytes: 1 << 30 }];
    writeFileSync(file, JSON.stringify({ simulator: { config: { backends: [{ name: 'x', pools }, { name: 'y', pools }, { name: 'z', pools }] } } }));
    assert.deepEqual(loadConfig({ config: file }, {}).backends.map((b) => b.name), ['x', 'y', 'z']);
  });

  const bad: [string, unknown, RegExp][] = [
    ['an unknown top-level key', { lisen: 'x' }, /lisen is not a setting/],
    ['a malformed listen address', { listen: 'localhost' }, /listen "localhost" must be HOST:PORT/],
    ['a port out of range', { listen: '127.0.0.1:70000' }, /must be HOST:PORT \(port 0-65535\)/],
    ['a metrics address on a unix socket, which Prometheus cannot scrape', { metricsListen: 'unix:/tmp/m.sock' }, /: metricsListen "unix:\/tmp\/m\.sock" must be HOST:PORT \(port 0-65535\)$/],
    ['an empty metrics address', { metricsListen: '' }, /: metricsListen must be a non-empty string$/],
    ['a backend without a plugin', { backends: [{ name: 'a' }] }, /backends\[0\]\.plugin must name a plugin/],
    ['a backend named twice', { backends: [{ name: 'a', plugin: 'p' }, { name: 'a', plugin: 'p' }] }, /backends\[1\]\.name a is used twice/],
    ['a negative engine setting', { engine: { stallTimeoutMs: -1 } }, /engine: stallTimeoutMs must be a number >= 0/],
    ['an unknown engine setting', { engine: { fast: 1 } }, /engine\.fast is not a setting/],
    ['poll bounds the wrong way round', { engine: { minPollMs: 10, maxPollMs: 5 } }, /minPollMs must not exceed/],
    ['a bad log level', { logLevel: 'loud' }, /log level "loud" is not one of/],
    ['a non-boolean simulator.embedded', { simulator: { embedded: 'yes' } }, /simulator\.embedded must be true or false/],
    ['a bad simulator setting', { simulator: { config: { blockSizeBytes: -4 } } }, /simulator\.config: .*blockSizeBytes/],
    ['a deadline of 0', { deadlines: { continue: 0 } }, /deadlines: continue must be a number >= 1, got 0: a deadline of 0 fails every call at once$/],
    ['no driver-call slots', { engine: { maxConcurrentCalls: 0 } }, /engine: maxConcurrentCalls must be a whole number >= 1, got 0: with no slot no driver is ever called$/],
    ['a count that is not whole', { engine: { cleanupAttempts: 2.5 } }, /engine: cleanupAttempts must be a whole number >= 1, got 2\.5$/],
    ['a retry backoff of 0', { engine: { backoffInitialMs: 0 } }, /engine: backoffInitialMs must be a number >= 1, got 0: a failing call would be retried without pause$/],
    ['a poll floor of 0', { engine: { minPollMs: 0 } }, /engine: minPollMs must be a number >= 1, got 0/],
    ['a deadline longer than a timer can wait', { deadlines: { complete: 2 ** 31 } }, /deadlines: complete must be at most 2147483647 \(the longest timer Node can set\), got 2147483648$/],
    ['a plugin load timeout of 0', { pluginLoadTimeoutMs: 0 }, /pluginLoadTimeoutMs must be a number >= 1, got 0: no plugin loads in 0 ms$/],
    ['a number given as a string', { deadlines: { start: '30000' } }, /deadlines: start must be a number >= 1, got "30000"$/],
  ];
  for (const [what, file, message] of bad) {
    test(`rejects ${what} with one line naming it`, (t) => {
      const dir = tempDir(t);
      const path = join(dir, 'f.json');
      writeFileSync(path, JSON.stringify(file));
      assert.throws(() => loadConfig({ config: path }, {}), (err: Error) => err instanceof ConfigError && message.test(err.message) && !err.message.includes('\n'));
    });
  }

  test('accepts 0 where 0 means off or at once, and knows exactly the settings it returns', (t) => {
    const path = join(tempDir(t), 'zeros.json');
    writeFileSync(path, JSON.stringify({ engine: { stallTimeoutMs: 0, progressPersistMs: 0, unresponsiveAfterMs: 0 }, shutdownGraceMs: 0 }));
    const c = loadConfig({ config: path }, {});
    assert.deepEqual([c.engine.stallTimeoutMs, c.engine.progressPersistMs, c.engine.unresponsiveAfterMs, c.shutdownGraceMs], [0, 0, 0, 0]);
    assert.deepEqual(Object.keys(c).sort(), [...SETTING_KEYS].sort());
    writeFileSync(path, JSON.stringify({ lisen: 'x' }));
    assert.throws(() => loadConfig({ config: path }, {}), new RegExp(`lisen is not a setting \\(known: ${SETTING_KEYS.join(', ')}\\)$`));
  });

  test('rejects a config file that is missing, or whose top level is not an object', (t) => {
    const dir = tempDir(t);
    assert.throws(() => loadConfig({ config: join(dir, 'none.json') }, {}), /cannot be read: ENOENT/);
    writeFileSync(join(dir, 'list.json'), '[1, 2]');
    assert.throws(() => loadConfig({ config: join(dir, 'list.json') }, {}), /list\.json: the top level must be an object, found an array$/);
  });

  test('accepts // and /* */ comments and trailing commas', (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'commented.jsonc');
    writeFileSync(path, ['{', '  // where clients connect', '  "listen": "127.0.0.1:7000", /* loopback */', '  "engine": { "minPollMs": 3, },', '}', ''].join('\n'));
    const c = loadConfig({ config: path }, {});
    assert.equal(c.listen, '127.0.0.1:7000');
    assert.equal(c.engine.minPollMs, 3);
  });

  test("loads the README's example config file as it is written", (t) => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const example = /The config file may also set:\s*```jsonc\n([^]*?)```/.exec(readme)?.[1];
    assert.ok(example, 'no jsonc example after "The config file may also set:" in README.md');
    assert.match(example, /\/\//, 'the example has no comments any more: this test would prove nothing');
    const path = join(tempDir(t), 'readme.jsonc');
    writeFileSync(path, example);
    const c = loadConfig({ config: path }, {});
    assert.deepEqual(c.backends.map((b) => [b.name, b.plugin]), [['alpha', 'simulator']]);
    assert.equal(c.engine.stallTimeoutMs, 300_000);
  });

  const syntax: [string, string, RegExp][] = [
    ['a missing comma, naming what stood there', '{\n  "listen": "127.0.0.1:1"\n  "dataDir": "d"\n}', /:3:3: expected ",", found `"dataDir"`$/],
    ['a property name without quotes', '{\n  listen: "x"\n}', /:2:3: unexpected text \(names and strings take double quotes\), found `listen`$/],
    ['a file cut short', '{ "listen": ', /:1:13: expected a value, found the end of the file$/],
    ['a comment never closed', '{ /* no end\n', /:1:3: a comment that is never closed, found `\/\* no end`$/],
  ];
  for (const [what, text, message] of syntax) {
    test(`reports ${what}, at line:column of the file, in one line`, (t) => {
      const path = join(tempDir(t), 'broken.jsonc');
      writeFileSync(path, text);
      assert.throws(
        () => loadConfig({ config: path }, {}),
        (err: Error) => err instanceof ConfigError && err.message.startsWith(`config file ${path}:`) && message.test(err.message) && !err.message.includes('\n'),
      );
    });
  }
});
