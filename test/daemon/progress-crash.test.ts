/**
 * Progress never goes back across a crash: real ferryd processes SIGKILLed
 * mid-copy, alone (a standalone ferry-sim keeps copying) or with the array
 * (the embedded one dies with it), and restarted on the same data dir.
 * Every value a caller is shown after the restart, through GetMigration and
 * WatchMigration, has at least as many bytes copied as the most it was
 * shown before the kill; bytes the array copies again are reported in
 * recopied_bytes, never by moving copied_bytes back.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import type { FerryClient, Migration } from '../../client/client.ts';
import { kill9, SMALL_ARRAY } from '../helpers.ts';
import { configFile, spawnSim, tempDir as simTempDir, type SimClient } from '../simulator/helpers.ts';
import { bootDaemon, childDaemonArgs } from './process-helpers.ts';

const MiB = 1024 * 1024;
const COUNT = 4;
const SHARE_BYTES = 8 * MiB;

/** The most each migration was shown copied, from every value read through `client`. */
class Highest {
  readonly copied = new Map<string, number>();
  readonly violations: string[] = [];

  constructor(private readonly floor = new Map<string, number>()) {}

  see(m: Migration, how: string): void {
    const copied = Number(m.progress.copiedBytes);
    const was = this.floor.get(m.id) ?? 0;
    if (copied < was) this.violations.push(`${m.id} shown ${copied} bytes copied by ${how}, after ${was} before the kill`);
    this.copied.set(m.id, Math.max(copied, this.copied.get(m.id) ?? 0));
  }
}

async function sharesOn(sim: SimClient): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const shareId = `p${i}`;
    await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: SHARE_BYTES });
    ids.push(shareId);
  }
  return ids;
}

/** Reads every migration until each was shown more than `target` copied (or, with no target, at least 1 MiB). */
async function readUntil(client: FerryClient, ids: string[], seen: Highest, target?: Map<string, number>): Promise<void> {
  const abort = new AbortController();
  const watches = ids.map(async (id) => {
    try {
      for await (const m of client.watch(id, { signal: abort.signal })) seen.see(m, 'WatchMigration');
    } catch {
      // Aborted once every migration got there.
    }
  });
  const enough = (id: string) => (seen.copied.get(id) ?? 0) > (target?.get(id) ?? MiB);
  while (!ids.every(enough)) {
    for (const id of ids) seen.see(await client.getMigration(id), 'GetMigration');
  }
  abort.abort();
  await Promise.all(watches);
}

async function crashAndCheck(t: TestContext, arrayToo: boolean): Promise<void> {
  let args: string[];
  let sim: SimClient | undefined;
  if (arrayToo) {
    args = childDaemonArgs(t, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } });
  } else {
    const dir = await simTempDir(t);
    const array = await spawnSim(t, join(dir, 'array'), await configFile(dir, SMALL_ARRAY));
    sim = array.client;
    args = childDaemonArgs(t, {
      simulator: { embedded: false },
      backends: ['alpha', 'beta'].map((name) => ({ name, plugin: 'simulator', options: { endpoint: array.address } })),
      engine: { minPollMs: 1 },
    });
  }
  const a = await bootDaemon(t, args);
  sim ??= a.sim;
  const shares = await sharesOn(sim);
  const ids: string[] = [];
  for (const shareId of shares) ids.push((await a.client.startMigration({ share: { backend: 'alpha', shareId }, destination: 'beta#bronze', maxBandwidthBytesPerSec: 2 * MiB })).id);

  const before = new Highest();
  await readUntil(a.client, ids, before);
  // Killed at once after the last read: what the callers were just shown must survive it.
  await kill9(a.daemon);

  const b = await bootDaemon(t, args);
  const after = new Highest(before.copied);
  await readUntil(b.client, ids, after, before.copied);
  assert.deepEqual(after.violations, [], 'a caller was shown less copied after the restart than before it');
  const final = await Promise.all(ids.map((id) => b.client.getMigration(id)));
  for (const m of final) {
    assert.ok(Number(m.progress.recopiedBytes) <= SHARE_BYTES, `${m.id} reports ${m.progress.recopiedBytes} bytes recopied, more than the share`);
    await b.client.cancelMigration(m.id);
  }
}

test('SIGKILL of ferryd alone: no caller is ever shown less copied than before the kill', { timeout: 120_000 }, (t) => crashAndCheck(t, false));

test('SIGKILL of ferryd with its embedded array: no caller is ever shown less copied than before; what the array copies again is recopied_bytes', { timeout: 120_000 }, (t) => crashAndCheck(t, true));
