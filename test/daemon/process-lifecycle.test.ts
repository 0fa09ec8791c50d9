/**
 * The life of driver processes around ferryd's own: a SIGKILL of ferryd
 * leaves no driver process behind (the driver sees its stdin end), and
 * ferryd's shutdown stops a driver that ignores SIGTERM with SIGKILL after
 * the grace period. Real ferryd and driver processes.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startDaemon } from '../../daemon/daemon.ts';
import { kill9, pluginsDir, ROOT, SMALL_ARRAY, spawnDaemon, testConfig } from '../helpers.ts';
import { bridgeCommand, fixtureCommand, LogTap, processPlugin } from './process-helpers.ts';

/** True if `pid` is gone, or only a zombie waiting to be reaped (it runs nothing and holds nothing). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw err;
  }
  // /proc/PID/stat: "pid (comm) STATE ..."; comm may hold spaces and parentheses.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

describe('driver processes and ferryd', () => {
  test('a SIGKILL of ferryd leaves no driver process behind', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-proc-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const plugins = pluginsDir(dir, ['simulator'], { proc: processPlugin('proc', bridgeCommand('proc')) });
    const config = join(dir, 'ferry.json');
    writeFileSync(config, JSON.stringify({ simulator: { config: SMALL_ARRAY }, backends: [{ name: 'alpha', plugin: 'proc' }, { name: 'beta', plugin: 'simulator' }] }));
    const data = join(dir, 'data');
    const d = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', data, '--config', config, '--plugins-dir', plugins, '--log-level', 'info']);
    t.after(async () => {
      if (d.child.exitCode === null && d.child.signalCode === null) await kill9(d);
    });
    const started = d.logs.find((l) => l.msg === 'driver process started' && l.plugin === 'proc');
    assert.ok(started, 'ferryd logged the driver process it started');
    const pid = started.pid as number;
    assert.equal(gone(pid), false);

    // A connection to the driver's socket closes when the driver process is gone: the event to await.
    const socket = connect(join(data, 'drivers/proc/driver.sock'));
    await once(socket, 'connect');
    const closed = once(socket, 'close');
    // Reading, so that the end of the connection is seen.
    socket.resume();
    await kill9(d);
    await closed;
    assert.equal(gone(pid), true, `driver process ${pid} outlived ferryd`);
  });

  test("ferryd's shutdown sends SIGTERM, then SIGKILL after its grace period to a driver that ignores SIGTERM", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-proc-'));
    const plugins = pluginsDir(dir, [], { proc: processPlugin('proc', fixtureCommand('stubborn.mjs', join(ROOT, 'plugins/simulator'), '--name', 'proc')) });
    const config = testConfig(join(dir, 'data'), { simulator: { embedded: false }, backends: [{ name: 'alpha', plugin: 'proc' }], pluginLoadTimeoutMs: 20_000 }, plugins);
    const tap = new LogTap();
    const daemon = await startDaemon(config, tap.log);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ready = await tap.next((l) => l.msg === 'driver process ready');
    await daemon.close(300);
    const exited = await tap.next((l) => l.msg === 'driver process exited' && l.pid === ready.pid);
    assert.ok(tap.lines.some((l) => l.msg === 'fixture driver: ignoring SIGTERM' && l.driverPid === ready.pid), 'SIGTERM was sent first');
    assert.equal(exited.signal, 'SIGKILL');
  });
});
