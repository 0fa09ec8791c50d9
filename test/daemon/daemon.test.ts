/**
 * Wiring a daemon and taking it apart (daemon/daemon.ts): a start that fails
 * part way takes apart what it had set up, in the same order as a close, so
 * that nothing it held stays held.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Level } from 'level';
import { startDaemon } from '../../daemon/daemon.ts';
import { silentLog } from '../../lib/log.ts';
import { pluginsDir, SMALL_ARRAY, tempDir, testConfig } from '../helpers.ts';

test('a start that fails after binding and making the drivers frees the address, the store and the array for the next start', async (t) => {
  const dir = tempDir(t);
  const data = join(dir, 'data');
  const store = join(data, 'ferry.db');
  mkdirSync(data, { recursive: true });
  // A migration record that does not parse: the engine's start fails, after the server is bound and the drivers made.
  const raw = new Level<string, string>(store);
  await raw.put('m!broken', 'not json');
  await raw.close();
  const config = { ...testConfig(data, { simulator: { config: SMALL_ARRAY } }, pluginsDir(dir, ['simulator'])), listen: `unix:${join(dir, 'ferryd.sock')}` };
  assert.ok(config.simulator.embedded && config.backends.length > 0);

  await assert.rejects(startDaemon(config, silentLog()), /could not decode/);

  // Opens only if the failed start let go of the store's LOCK.
  const fixed = new Level<string, string>(store);
  await fixed.open();
  await fixed.del('m!broken');
  await fixed.close();
  // Starts only if the failed start let go of the array and the socket too.
  const daemon = await startDaemon(config, silentLog());
  t.after(() => daemon.close(0));
  assert.equal(daemon.address, config.listen);
});
