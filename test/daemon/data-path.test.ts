/**
 * The data path through ferryd, end to end, over a driver that offers only
 * the host path (test/fixtures/plugins/memory-data, in memory): admission
 * chooses the host path when the source's driver cannot reach the
 * destination, refuses the driver path asked for there, and the mover
 * carries a migration to SUCCESS through the engine. The same over the real
 * simulator, with ferryd killed in every state, comes with the simulator's
 * data path.
 */
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { inProcessDaemon, rejectsWith, ROOT, tempDir, testConfig, waitForState } from '../helpers.ts';

async function system(t: TestContext) {
  const dir = tempDir(t);
  const plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  symlinkSync(join(ROOT, 'test/fixtures/plugins/memory-data'), join(plugins, 'memory-data'));
  const config = testConfig(
    join(dir, 'data'),
    {
      simulator: { embedded: false },
      backends: [
        { name: 'm1', plugin: 'memory-data', options: { unreachable: true, shareBytes: 1024 * 1024 } },
        { name: 'm2', plugin: 'memory-data', options: { shareBytes: 1024 * 1024 } },
      ],
      engine: { minPollMs: 1 },
      hostPath: { warmIntervalMs: 10 },
    },
    plugins,
  );
  return inProcessDaemon(t, config);
}

const share = { backend: 'm1', shareId: 's1' };

describe('data paths through ferryd', () => {
  test('CheckCompatibility says the host path where the driver cannot reach the destination, and why the driver path is refused there', async (t) => {
    const { client } = await system(t);
    const auto = await client.checkCompatibility({ share, destination: 'm2#mem', writable: true });
    assert.equal(auto.compatible, true, auto.reasons.join('; '));
    assert.equal(auto.dataPath, 'DATA_PATH_HOST');
    const driver = await client.checkCompatibility({ share, destination: 'm2#mem', dataPath: 'DATA_PATH_DRIVER' });
    assert.equal(driver.compatible, false);
    assert.equal(driver.dataPath, 'DATA_PATH_DRIVER');
    assert.match(driver.reasons.join('\n'), /driver memory-data \(backend m1\) cannot reach m2#mem/);
  });

  test('StartMigration refuses the driver path asked for where it cannot go, and the host path what it never honours; nothing is made', async (t) => {
    const { client } = await system(t);
    await rejectsWith(client.startMigration({ share, destination: 'm2#mem', dataPath: 'DATA_PATH_DRIVER' }), 'FAILED_PRECONDITION', /cannot reach m2#mem.*ask for DATA_PATH_HOST/);
    await rejectsWith(client.startMigration({ share, destination: 'm2#mem', preserveSnapshots: true }), 'UNIMPLEMENTED', /the host data path \(m1 to m2\) does not support preserve_snapshots/);
    await rejectsWith(client.startMigration({ share, destination: 'm2#nowhere' }), 'NOT_FOUND', /pool nowhere not found on backend m2 \(it has mem\)/);
    assert.equal((await client.listMigrations({})).migrations.length, 0);
  });

  test('a migration with data_path unset goes by the host path to SUCCESS, with the cutover measured', async (t) => {
    const { client } = await system(t);
    const m = await client.startMigration({ share, destination: 'm2#mem', writable: true });
    assert.equal(m.dataPath, 'DATA_PATH_HOST');
    const done = await waitForState(client, m.id, 'PHASE1_DONE');
    assert.equal(done.progress.copiedBytes, 1024 * 1024);
    await client.completeMigration(m.id);
    const end = await waitForState(client, m.id, 'SUCCESS');
    assert.ok(end.cutover && end.cutover.freezeMs >= 0, 'no cutover figures');
    assert.equal(end.dataPath, 'DATA_PATH_HOST');
  });
});
