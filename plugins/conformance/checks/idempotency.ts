/**
 * Idempotency, at both levels the contract has it. Through ferryd: the API
 * calls repeated with one request. Directly: the driver calls repeated with
 * the same migration and the same checkpoint, each repeat on a new driver
 * instance, which is exactly what the engine does after a crash (the result
 * of the last call was lost, a new driver instance is made from the factory,
 * and the call is made again). The daemon dedupes the API repeats itself,
 * so only the direct repeats test the driver.
 */
import type { Checkpoint, CompleteResult } from '../../api/index.ts';
import { randomSuffix } from '../data.ts';
import { expect } from '../failure.ts';
import { stateName, type Check } from './check.ts';

const ORDINAL = (k: number, n: number) => `call ${k} of ${n}`;

/** StartMigration with one request_id, N times. */
export const startRepeatedApi: Check = {
  id: 'start-repeated-api',
  title: 'StartMigration repeated with one request_id makes one migration and one destination',
  async run(c) {
    const n = c.settings.repeat;
    const share = await c.share();
    const before = await c.destinationListing();
    const requestId = `conformance-${randomSuffix()}`;
    const ids = new Set<string>();
    for (let k = 1; k <= n; k++) ids.add((await c.start(share, { requestId })).id);
    expect(ids.size === 1, `${n} StartMigration calls with request_id ${requestId} made ${ids.size} migrations: ${[...ids].join(', ')}`, 'StartMigration');
    const [id] = [...ids] as [string];
    const { migrations } = await c.h.client.listMigrations({ backend: c.h.source.name, pageSize: 1000 });
    const forShare = migrations.filter((m) => m.share.shareId === share.id);
    expect(forShare.length === 1, `ferryd lists ${forShare.length} migrations of share ${share.id}`, 'ListMigrations');
    await c.waitState(id, 'PHASE1_DONE', 'phase 1 to be done');
    const made = await c.newOnDestination(before);
    expect(made.length <= 1, `one migration left ${made.length} destinations: ${made.join(', ')}`, 'start');
  },
};

/** The driver's start, N times for one migration, as after a crash in STARTING. */
export const startRepeatedDriver: Check = {
  id: 'start-repeated-driver',
  title: 'start repeated for one migration (each repeat on a new driver instance, as after a crash in STARTING) makes one job and one destination',
  async run(c) {
    const n = c.settings.repeat;
    const share = await c.share();
    const before = await c.destinationListing();
    const direct = c.direct(share);
    await direct.start(await c.driver());
    for (let k = 2; k <= n; k++) {
      const driver = await c.driver();
      // In STARTING the engine's checkpoint is null: start's own result was never persisted.
      const r = await direct.call(`start (${ORDINAL(k, n)}, new driver instance, checkpoint null)`, () => driver.start(direct.args(null)));
      direct.checkpoint = r.checkpoint;
    }
    let made = await c.newOnDestination(before);
    expect(made.length <= 1, `${n} start calls for migration ${direct.spec.id} left ${made.length} destinations: ${made.join(', ')}`, 'start');
    // The job the repeats returned is the one that copies.
    const driver = await c.driver();
    await direct.continueUntilPhase1(driver);
    made = await c.newOnDestination(before);
    expect(made.length <= 1, `after phase 1, migration ${direct.spec.id} has ${made.length} destinations: ${made.join(', ')}`, 'start');
    await direct.cancelUntilDone(driver);
  },
};

/** CompleteMigration, N times. */
export const completeRepeatedApi: Check = {
  id: 'complete-repeated-api',
  title: 'CompleteMigration repeated ends in one SUCCESS with the data at the destination',
  async run(c) {
    const n = c.settings.repeat;
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await c.start(share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    for (let k = 1; k <= n; k++) {
      const r = await c.complete(m.id);
      expect(['MIGRATION_STATE_COMPLETING', 'MIGRATION_STATE_SUCCESS'].includes(r.state), `CompleteMigration ${ORDINAL(k, n)} returned the migration in ${stateName(r.state)}`, 'CompleteMigration');
    }
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS');
  },
};

/** The driver's complete, N times with one checkpoint, as after a crash in COMPLETING. */
export const completeRepeatedDriver: Check = {
  id: 'complete-repeated-driver',
  title: 'complete repeated with the same checkpoint (each repeat on a new driver instance, as after a crash in COMPLETING) resumes and ends done with the data moved',
  async run(c) {
    const n = c.settings.repeat;
    const share = await c.share();
    const before = await c.destinationListing();
    const direct = c.direct(share);
    const first = await c.driver();
    await direct.start(first);
    await direct.continueUntilPhase1(first);
    const given: Checkpoint = direct.checkpoint;
    const answers: CompleteResult[] = [];
    for (let k = 1; k <= n; k++) {
      const driver = k === 1 ? first : await c.driver();
      const label = k === 1 ? `complete (${ORDINAL(k, n)})` : `complete (${ORDINAL(k, n)}, new driver instance, the checkpoint call 1 was given)`;
      answers.push(await direct.call(label, () => driver.complete(direct.args(given))));
    }
    c.note(`complete answered ${answers.map((a) => a.status).join(', ')}`);
    direct.checkpoint = answers.at(-1)!.checkpoint;
    if (answers.at(-1)!.status !== 'done') await direct.completeUntilDone(await c.driver(), 'complete (carrying on from the last checkpoint)');
    else direct.needsCancel = false;
    await c.expectMoved(share, before, `after ${n} complete calls`);
  },
};

/** The driver's cancel, N times; also after a lost start result, and for a job the array never saw. */
export const cancelRepeatedDriver: Check = {
  id: 'cancel-repeated-driver',
  title: 'cancel repeated (each repeat on a new driver instance) is idempotent, also with the null checkpoint of a lost start result and for a migration the array never saw',
  async run(c) {
    const n = c.settings.repeat;
    const share = await c.share();
    let before = await c.destinationListing();
    const direct = c.direct(share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    const first = await c.driver();
    await direct.start(first);
    await direct.continueOnce(first);
    const given: Checkpoint = direct.checkpoint;
    let last = given;
    for (let k = 1; k <= n; k++) {
      const driver = k === 1 ? first : await c.driver();
      const label = k === 1 ? `cancel (${ORDINAL(k, n)})` : `cancel (${ORDINAL(k, n)}, new driver instance, the checkpoint call 1 was given)`;
      last = (await direct.call(label, () => driver.cancel(direct.args(given)))).checkpoint;
    }
    direct.checkpoint = last;
    await direct.cancelUntilDone(first, 'cancel (carrying on from the last checkpoint)');
    await c.expectUntouched(share, before, `after ${n} cancel calls`, 'cancel');

    // The engine cancels with a null checkpoint when start failed or its result was lost (cleanup after ERROR in STARTING).
    before = await c.destinationListing();
    const lost = c.direct(share);
    await lost.start(await c.driver());
    lost.checkpoint = null;
    await lost.cancelUntilDone(await c.driver(), 'cancel (checkpoint null: the result of start was lost)');
    await c.expectUntouched(share, before, 'after a cancel with the null checkpoint of a lost start result', 'cancel (checkpoint null)');

    const never = c.direct(share);
    await never.cancelUntilDone(await c.driver(), 'cancel of a migration the array never saw');
    await c.expectUntouched(share, before, 'after a cancel of a migration the array never saw', 'cancel (a migration the array never saw)');
  },
};
