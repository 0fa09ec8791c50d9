/**
 * The host data path (driver guide section 14): checks of the optional
 * `dataSource` and `dataDestination` halves, gated on the plugin's drivers
 * offering them. First the calls made directly, through ferryd's guard
 * (which checks every piece's place and CRC-32C): snapshots are point in
 * time, changed extents cover the writes and little more, the freeze holds
 * writes and thaws by its lease, targets are idempotent, refuse damaged
 * pieces and digest what they hold, and a whole migration driven call by
 * call moves the share. Then migrations through ferryd on the host path:
 * moved, cancelled, and survived a SIGKILL of ferryd.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { crc32c } from '@node-rs/crc32';
import { pollDelay } from '../../../host/poll.ts';
import type { Extent } from '../../api/index.ts';
import type { CheckContext, TestShare } from '../context.ts';
import { pattern, sha256 } from '../data.ts';
import { codeOf, describeError, expect, fail } from '../failure.ts';
import { within } from '../harness.ts';
import { extentBytes, piecesOf } from '../host-path.ts';
import { allOf, claims, offersHostPath, PAST_STARTING, stateName, type Check } from './check.ts';

const KiB = 1024;

/** A lease long enough that only a release (or the check's end) ends the freeze. */
const LONG_LEASE_MS = 120_000;
/** The lease of the check that lets one run out. */
const SHORT_LEASE_MS = 1_000;

/** Where `a` and `b` first differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Merges byte ranges into sorted, non-overlapping ones. */
function union(ranges: readonly Extent[]): Extent[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((x, y) => x.offset - y.offset);
  const out: Extent[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.offset <= last.offset + last.length) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else out.push({ ...r });
  }
  return out;
}

/** The parts of `ranges` not inside `cover` (both sorted), as ranges. */
function outside(ranges: readonly Extent[], cover: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const r of union(ranges)) {
    let at = r.offset;
    const end = r.offset + r.length;
    for (const c of cover) {
      if (c.offset + c.length <= at) continue;
      if (c.offset >= end) break;
      if (c.offset > at) out.push({ offset: at, length: c.offset - at });
      at = Math.max(at, c.offset + c.length);
      if (at >= end) break;
    }
    if (at < end) out.push({ offset: at, length: end - at });
  }
  return out;
}

const show = (ranges: readonly Extent[]) => ranges.slice(0, 4).map((r) => `${r.offset}+${r.length}`).join(', ') + (ranges.length > 4 ? `, … (${ranges.length} in all)` : '');

/** Writes a few blocks spread over the share (start, middle, end), each with its own bytes. */
async function spread(c: CheckContext, share: TestShare, tag: string, size = 8 * KiB): Promise<Extent[]> {
  const last = share.sizeBytes - size;
  const offsets = [...new Set([0, Math.floor(share.sizeBytes / 2 / size) * size, last])];
  for (const [i, offset] of offsets.entries()) await c.write(share, offset, pattern(`${tag}:${i}`, size), tag);
  return offsets.map((offset) => ({ offset, length: size }));
}

/** The whole share, as one extent. */
const whole = (share: TestShare): Extent[] => [{ offset: 0, length: share.sizeBytes }];

/** Expects `fn` to be refused with Ferry code `code`. */
async function expectCode(label: string, code: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    expect(codeOf(err) === code, `${label} threw ${describeError(err)}; the contract says ${code}`, label);
    return;
  }
  fail(`${label} succeeded; the contract says it is refused with ${code}`, label);
}

/** The destination pool's free bytes as ferryd's ListBackends reports them. */
async function destinationFreeBytes(c: CheckContext): Promise<number> {
  const { backends } = await c.h.client.listBackends();
  const pool = backends.find((b) => b.name === c.h.destination.name)?.pools.find((p) => p.name === c.h.setup.destinationPool);
  expect(pool, `ListBackends does not list pool ${c.h.destinationRef}`, 'describe');
  return pool.freeBytes;
}

const source = offersHostPath('source');
const destination = offersHostPath('destination');
const both = offersHostPath('source', 'destination');

export const snapshotPointInTime: Check = {
  id: 'host-snapshot-point-in-time',
  title: 'a snapshot reads as the share was when it was taken, whatever is written after, in pieces with their right CRC-32C; taken again it is answered, not taken again',
  gate: source,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    const info = await m.snapshot(1);
    expect(info.sizeBytes === share.sizeBytes, `createSnapshot answered sizeBytes ${info.sizeBytes} for a share of ${share.sizeBytes} bytes`, 'createSnapshot');
    const then = Buffer.from(share.content);
    await spread(c, share, 'after snapshot 1');
    for (let k = 2; k <= c.settings.repeat; k++) {
      const again = await m.snapshot(1, `createSnapshot(${m.snapshotId(1)}) (call ${k} of ${c.settings.repeat})`);
      expect(JSON.stringify(again) === JSON.stringify(info), `createSnapshot of an existing snapshot answered ${JSON.stringify(again)}; the first call answered ${JSON.stringify(info)}`, 'createSnapshot');
    }
    const listed = await m.changed(0, 1, share.sizeBytes);
    const missing = outside(whole(share), union(listed));
    expect(missing.length === 0, `listChangedExtents('', ${m.snapshotId(1)}) leaves out ${show(missing)} of a share written whole; with no base it must list every extent that may hold data`, 'listChangedExtents');
    const read = await m.read(1, whole(share));
    const at = firstDifference(read, then);
    if (at >= 0) {
      const now = read[at] === share.content[at] ? ': the bytes written after the snapshot was taken' : '';
      fail(`readExtents(${m.snapshotId(1)}) returns bytes at offset ${at} that differ from the share's content when the snapshot was taken${now}`, 'readExtents');
    }
    await m.snapshot(2);
    const later = await m.read(2, whole(share));
    const at2 = firstDifference(later, share.content);
    expect(at2 < 0, `readExtents(${m.snapshotId(2)}), of a snapshot taken after the writes, differs from the share's content at offset ${at2}`, 'readExtents');
    c.note(`snapshot block size ${info.blockSizeBytes} bytes; ${listed.length} extents (${extentBytes(listed)} bytes) listed for the whole share`);
  },
};

export const snapshotDelete: Check = {
  id: 'host-snapshot-delete',
  title: 'deleteSnapshot is idempotent (a snapshot that is gone, or never was, is success) and a deleted snapshot reads NOT_FOUND',
  gate: source,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    await m.snapshot(1);
    for (let k = 1; k <= c.settings.repeat; k++) await m.deleteSnapshot(1, `deleteSnapshot(${m.snapshotId(1)}) (call ${k} of ${c.settings.repeat})`);
    await m.deleteSnapshot(9, `deleteSnapshot(${m.snapshotId(9)}), never taken`);
    const snapshotId = m.snapshotId(1);
    await expectCode(`readExtents(${snapshotId}) after it was deleted`, 'NOT_FOUND', async () => {
      for await (const _ of m.source.readExtents({ ...m.args, snapshotId, extents: [{ offset: 0, length: 1 }] })) break;
    });
    await expectCode(`listChangedExtents('', ${snapshotId}) after it was deleted`, 'NOT_FOUND', () =>
      m.source.listChangedExtents({ ...m.args, baseSnapshotId: '', snapshotId, startOffset: 0, maxExtents: 8 }),
    );
  },
};

export const changedExtents: Check = {
  id: 'host-changed-extents',
  title: "the changed extents between two snapshots cover every byte written between them and nothing beyond those writes widened to the snapshot's blocks, page by page",
  gate: source,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    const info = await m.snapshot(1);
    const bs = info.blockSizeBytes;
    const size = share.sizeBytes;
    if (size < 16 * bs) fail(`the test share (${size} bytes) is smaller than 16 of the snapshot's blocks (${bs} bytes): give a larger --share-size`);
    // Writes of odd sizes at odd offsets: one byte, one straddling two blocks, one of several blocks, the share's last bytes.
    const writes: Extent[] = [
      { offset: 0, length: 1 },
      { offset: 3 * bs + 5, length: bs },
      { offset: Math.floor(size / 2) - 100, length: 3 * bs + 200 },
      { offset: size - 7, length: 7 },
    ];
    for (const [i, w] of writes.entries()) await c.write(share, w.offset, pattern(`changed:${i}`, w.length), 'between snapshots 1 and 2');
    await m.snapshot(2);
    // Pages of 2 extents, so that paging is exercised.
    const listed = await m.changed(1, 2, size, 2);
    const missed = outside(writes, union(listed));
    expect(missed.length === 0, `listChangedExtents(${m.snapshotId(1)}, ${m.snapshotId(2)}) leaves out ${show(missed)}, written between the two snapshots (it listed ${show(listed)})`, 'listChangedExtents');
    const widened = union(writes.map((w) => {
      const start = Math.floor(w.offset / bs) * bs;
      return { offset: start, length: Math.min(size, Math.ceil((w.offset + w.length) / bs) * bs) - start };
    }));
    const extra = outside(listed, widened);
    expect(extra.length === 0, `listChangedExtents(${m.snapshotId(1)}, ${m.snapshotId(2)}) lists ${extentBytes(extra)} bytes no write touched (${show(extra)}); the writes widened to blocks of ${bs} bytes are ${show(widened)}`, 'listChangedExtents');
    const delta = await m.read(2, listed);
    let at = 0;
    for (const e of listed) {
      const d = firstDifference(delta.subarray(at, at + e.length), share.content.subarray(e.offset, e.offset + e.length));
      expect(d < 0, `readExtents(${m.snapshotId(2)}) of the changed extent ${e.offset}+${e.length} differs from the share at offset ${e.offset + d}`, 'readExtents');
      at += e.length;
    }
    await m.snapshot(3);
    const none = await m.changed(2, 3, size);
    expect(none.length === 0, `listChangedExtents(${m.snapshotId(2)}, ${m.snapshotId(3)}), with nothing written between them, lists ${show(none)}`, 'listChangedExtents');
    c.note(`${writes.length} writes of ${extentBytes(writes)} bytes listed as ${listed.length} extents of ${extentBytes(listed)} bytes (block ${bs} bytes)`);
  },
};

/** Starts a write of one block of `share` without waiting for it; `events` gets how it ended. */
function startWrite(c: CheckContext, share: TestShare, offset: number, tag: string, events: string[]) {
  const data = pattern(tag, 4 * KiB);
  const done = c.h.adapter.writeShare(share.id, offset, data).then(
    () => {
      events.push('write acknowledged');
      data.copy(share.content, offset);
      return true;
    },
    (err: unknown) => {
      events.push(`write refused: ${describeError(err)}`);
      return false;
    },
  );
  return { done, data };
}

/** The share's checksum, read while it is frozen (reads are not), failing if it does not answer in the migration timeout. */
async function frozenChecksum(c: CheckContext, share: TestShare): Promise<string> {
  try {
    return await within(c.h.adapter.checksum(share.id), c.settings.timeouts.migrationMs, 'adapter.checksum while the share was frozen');
  } catch (err) {
    return fail(`${describeError(err)} (freezeWrites must hold writes, not reads)`, 'adapter.checksum');
  }
}

/** How long host-freeze-nondisruptive holds a frozen write before it calls the freeze good. */
const FREEZE_HOLD_MS = 500;

export const freezeHoldsWrites: Check = {
  id: 'host-freeze-nondisruptive',
  title: 'freezeWrites of a nondisruptive migration holds a write started while frozen until releaseWrites, and it then lands; nothing acknowledged is lost',
  gate: allOf(source, claims('nondisruptive')),
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share, { nondisruptive: true });
    const events: string[] = [];
    await m.freeze(LONG_LEASE_MS);
    events.push('frozen');
    const before = sha256(share.content);
    const write = startWrite(c, share, 4 * KiB, 'while frozen', events);
    // A read made after the write was sent: by the time it answers, a write the freeze does not hold has usually
    // landed. Usually: a driver may answer the read first (the simulator's reads do not wait for writes in flight),
    // so a write the freeze ignored also gets FREEZE_HOLD_MS to show it. A held write waits that long, as it must.
    const sum = await frozenChecksum(c, share);
    await Promise.race([write.done, delay(FREEZE_HOLD_MS)]);
    expect(!events.includes('write acknowledged'), `a write started while frozen was acknowledged before releaseWrites (${events.join(' -> ')})`, 'freezeWrites');
    expect(!events.some((e) => e.startsWith('write refused')), `a write started while frozen failed although the migration is nondisruptive (${events.join(' -> ')}); it must wait`, 'freezeWrites');
    expect(sum === before, "the share's content changed while frozen: a write started while frozen landed before releaseWrites", 'freezeWrites');
    events.push('releasing');
    await m.release(false);
    events.push('released');
    const landed = await within(write.done, c.settings.timeouts.migrationMs, 'the write held by the freeze to finish after releaseWrites');
    expect(landed, `the write held by the freeze failed after releaseWrites (${events.join(' -> ')}); it must wait, then land`, 'releaseWrites');
    expect(events.indexOf('write acknowledged') > events.indexOf('releasing'), `the events came in the order ${events.join(' -> ')}`, 'freezeWrites');
    const after = await c.checksum(share);
    expect(after === sha256(share.content), "after releaseWrites the share's content is not every acknowledged write", 'releaseWrites');
    c.note(events.join(' -> '));
  },
};

export const freezeRefusesWrites: Check = {
  id: 'host-freeze-disruptive',
  title: 'freezeWrites of a migration that is not nondisruptive makes a write started while frozen fail, and writes succeed again after releaseWrites; nothing acknowledged is lost',
  gate: source,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share, { nondisruptive: false });
    const events: string[] = [];
    await m.freeze(LONG_LEASE_MS);
    events.push('frozen');
    const write = startWrite(c, share, 4 * KiB, 'while frozen', events);
    const landed = await within(write.done, c.settings.timeouts.migrationMs, 'a write started while frozen (not nondisruptive) to fail');
    expect(!landed, `a write started while frozen was acknowledged, the migration not being nondisruptive (${events.join(' -> ')}); it must fail`, 'freezeWrites');
    await m.release(false);
    events.push('released');
    await c.write(share, 8 * KiB, pattern('after release', 4 * KiB), 'after releaseWrites');
    const sum = await c.checksum(share);
    expect(sum === sha256(share.content), "after releaseWrites the share's content is not every acknowledged write", 'releaseWrites');
    c.note(events.join(' -> '));
  },
};

export const freezeLeaseEnds: Check = {
  id: 'host-freeze-lease',
  title: 'a freeze whose lease runs out without a release thaws the share by itself: a write waiting on it completes (or, not nondisruptive, writes succeed again)',
  gate: source,
  async run(c) {
    const share = await c.share();
    const nondisruptive = c.h.capabilities.nondisruptive;
    const m = await c.hostMigration(share, { nondisruptive });
    const events: string[] = [];
    await m.freeze(SHORT_LEASE_MS);
    events.push(`frozen for ${SHORT_LEASE_MS} ms`);
    if (nondisruptive) {
      const write = startWrite(c, share, 4 * KiB, 'while frozen, never released', events);
      const landed = await within(write.done, c.settings.timeouts.migrationMs, `the write waiting on a freeze whose ${SHORT_LEASE_MS} ms lease ran out`).catch((err: unknown) => fail(`${describeError(err)}: the share did not thaw by itself`, 'freezeWrites'));
      expect(landed, `a write waiting on a freeze whose lease ran out did not complete (${events.join(' -> ')}); the share must thaw as if released`, 'freezeWrites');
    } else {
      // Writes fail while frozen: try until one is accepted; the array offers nothing to wait on.
      const until = Date.now() + c.settings.timeouts.migrationMs;
      for (let k = 0; ; k++) {
        const write = startWrite(c, share, 4 * KiB, `after the lease ${k}`, events);
        if (await write.done) break;
        if (Date.now() > until) fail(`writes were still refused ${c.settings.timeouts.migrationMs} ms after a freeze with a ${SHORT_LEASE_MS} ms lease: the share did not thaw by itself`, 'freezeWrites');
        await delay(pollDelay(undefined));
      }
    }
    const sum = await c.checksum(share);
    expect(sum === sha256(share.content), "after the lease ran out the share's content is not every acknowledged write", 'freezeWrites');
    c.note(`${nondisruptive ? 'nondisruptive' : 'not nondisruptive'}: ${events.filter((e, i, all) => all.indexOf(e) === i).join(' -> ')}`);
  },
};

export const targetRepeated: Check = {
  id: 'host-target-repeated',
  title: 'createTarget repeated answers the same (promoted false), and discardTarget repeated, or of a target that never was, is success',
  gate: destination,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    for (let k = 1; k <= c.settings.repeat; k++) {
      const r = await m.createTarget({ sizeBytes: share.sizeBytes, metadata: {}, shareType: '' }, `createTarget(${m.targetId}) (call ${k} of ${c.settings.repeat})`);
      expect(r.promoted === false, `createTarget(${m.targetId}) call ${k} of ${c.settings.repeat} answered promoted true for a target never promoted`, 'createTarget');
    }
    for (let k = 1; k <= c.settings.repeat; k++) await m.discard(`discardTarget(${m.targetId}) (call ${k} of ${c.settings.repeat})`);
    const never = await c.hostMigration(share);
    await never.discard(`discardTarget(${never.targetId}), never created`);
  },
};

export const targetRefusesDamage: Check = {
  id: 'host-target-crc',
  title: 'writeExtents refuses a piece whose CRC-32C does not match with DATA_LOSS, and writes nothing of it',
  gate: destination,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    await m.createTarget({ sizeBytes: share.sizeBytes, metadata: {}, shareType: '' });
    const length = 64 * KiB;
    const offset = Math.floor(share.sizeBytes / 2 / length) * length;
    const [damaged] = piecesOf(offset, pattern('damaged', length));
    const label = `writeExtents(${m.targetId}) of a piece whose CRC-32C does not match`;
    await expectCode(label, 'DATA_LOSS', () => m.destination.writeExtents({ ...m.args, targetId: m.targetId, data: (async function* () { yield { ...damaged!, crc32c: (damaged!.crc32c ^ 0x5a5a5a5a) >>> 0 }; })() }));
    const { digests } = await m.flush([{ offset, length }]);
    const zeros = crc32c(Buffer.alloc(length));
    expect(digests[0]!.crc32c === zeros, `after the damaged piece was refused, flushTarget says the range ${offset}+${length} holds bytes other than zeros (CRC-32C ${digests[0]!.crc32c}, zeros ${zeros}): some of it was written`, 'writeExtents');
  },
};

export const targetDigests: Check = {
  id: 'host-target-digests',
  title: "flushTarget's digests are the CRC-32C of what was written (zeros where nothing was), also after the same bytes are written again",
  gate: destination,
  async run(c) {
    const share = await c.share();
    const m = await c.hostMigration(share);
    await m.createTarget({ sizeBytes: share.sizeBytes, metadata: {}, shareType: '' });
    const image = Buffer.alloc(share.sizeBytes);
    // Ranges of odd sizes at odd offsets, one over 1 MiB (several pieces).
    const writes: Extent[] = [
      { offset: 1000, length: 70_000 },
      { offset: Math.floor(share.sizeBytes / 2), length: Math.min(1536 * KiB, Math.floor(share.sizeBytes / 2)) },
    ];
    const pieces = writes.flatMap((w, i) => {
      const data = pattern(`target:${i}`, w.length);
      data.copy(image, w.offset);
      return piecesOf(w.offset, data);
    });
    const { writtenBytes } = await m.write(pieces);
    expect(writtenBytes === extentBytes(writes), `writeExtents answered writtenBytes ${writtenBytes} for ${extentBytes(writes)} bytes sent`, 'writeExtents');
    const ranges: Extent[] = [...writes, { offset: 0, length: 1000 }, { offset: 500, length: 100_000 }, { offset: 0, length: share.sizeBytes }];
    const expectDigests = async (when: string) => {
      const { digests } = await m.flush(ranges);
      for (const [i, r] of ranges.entries()) {
        const want = crc32c(image.subarray(r.offset, r.offset + r.length));
        expect(digests[i]!.crc32c === want, `flushTarget ${when} answered CRC-32C ${digests[i]!.crc32c} for ${r.offset}+${r.length}; the bytes written there (zeros elsewhere) have ${want}`, 'flushTarget');
      }
    };
    await expectDigests('after the writes');
    await m.write(pieces, `writeExtents(${m.targetId}) of the same pieces again`);
    await expectDigests('after the same bytes were written again');
  },
};

export const directHostMigration: Check = {
  id: 'host-direct-migration',
  title: 'a host-path migration driven call by call (snapshots, target, copies, freeze, promote, release committed and retire, each repeated) moves the share with every acknowledged write',
  gate: both,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const nondisruptive = c.h.capabilities.nondisruptive;
    const m = await c.hostMigration(share, { nondisruptive });
    const info = await m.snapshot(1);
    const created = await m.createTarget(info);
    expect(!created.promoted, `createTarget(${m.targetId}) of a new target answered promoted true`, 'createTarget');
    const first = await m.copy(0, 1, share.sizeBytes);
    await spread(c, share, 'during pass 2');
    await m.snapshot(2);
    const second = await m.copy(1, 2, share.sizeBytes);
    await m.deleteSnapshot(1);
    await spread(c, share, 'before the freeze');
    await m.freeze(LONG_LEASE_MS);
    // With nondisruptive, a write that waits on the freeze goes to the share where it lives after the release: the destination.
    const events: string[] = [];
    const held = nondisruptive ? startWrite(c, share, 12 * KiB, 'held through the commit', events) : undefined;
    await m.snapshot(3);
    const last = await m.copy(2, 3, share.sizeBytes);
    for (let k = 1; k <= c.settings.repeat; k++) await m.promote(`promoteTarget(${m.targetId}) (call ${k} of ${c.settings.repeat})`);
    const again = await m.createTarget(info, `createTarget(${m.targetId}) after the promote`);
    expect(again.promoted, `createTarget(${m.targetId}) after promoteTarget answered promoted false; it must say true (that is how ferryd learns after a crash that the commit happened)`, 'createTarget');
    expect(!events.includes('write acknowledged'), 'a write started while frozen was acknowledged before releaseWrites', 'freezeWrites');
    for (let k = 1; k <= c.settings.repeat; k++) await m.release(true, `releaseWrites(committed true) (call ${k} of ${c.settings.repeat})`);
    if (held) expect(await within(held.done, c.settings.timeouts.migrationMs, 'the write held by the freeze to finish after the commit'), `the write held through the commit failed (${events.join(' -> ')})`, 'releaseWrites');
    for (let k = 1; k <= c.settings.repeat; k++) await m.retire(`retireSource (call ${k} of ${c.settings.repeat})`);
    await c.expectMoved(share, before, 'after promoteTarget, releaseWrites and retireSource', 'promoteTarget');
    c.note(`copied ${first} bytes, then ${second}, then ${last} while frozen${held ? '; a write held by the freeze landed at the destination' : ''}`);
  },
};

/** Starts a migration on the host path and checks that ferryd says so. */
async function startHost(c: CheckContext, share: TestShare, extra: Parameters<CheckContext['start']>[1] = {}) {
  const m = await c.start(share, { dataPath: 'DATA_PATH_HOST', writable: true, ...extra });
  expect(m.dataPath === 'DATA_PATH_HOST', `StartMigration with data_path DATA_PATH_HOST answered a migration whose data_path is ${String(m.dataPath)}`, 'StartMigration');
  return m;
}

export const hostPathMigration: Check = {
  id: 'host-path-migration',
  title: 'StartMigration with data_path DATA_PATH_HOST moves the share on the host path, with the writes made during phase 1',
  gate: both,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await startHost(c, share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    await spread(c, share, 'during PHASE1_DONE');
    await c.complete(m.id);
    const end = await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    expect(end.dataPath === 'DATA_PATH_HOST', `the migration ended with data_path ${String(end.dataPath)}`, 'GetMigration');
    await c.expectMoved(share, before, 'after SUCCESS on the host path', 'promoteTarget');
    if (end.cutover) c.note(`the cutover froze writes for ${end.cutover.freezeMs.toFixed(1)} ms, final delta ${end.cutover.finalDeltaBytes} bytes`);
  },
};

export const hostPathCancel: Check = {
  id: 'host-path-cancel-phase1-done',
  title: "cancel of a host-path migration in PHASE1_DONE leaves the source intact and gives the destination pool's room back",
  gate: both,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const free = await destinationFreeBytes(c);
    const m = await startHost(c, share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    const during = await destinationFreeBytes(c);
    await c.cancel(m.id);
    await c.waitState(m.id, 'CANCELLED', 'the cancel to finish');
    await c.expectUntouched(share, before, 'after CANCELLED on the host path', 'discardTarget');
    const after = await destinationFreeBytes(c);
    expect(after === free, `after CANCELLED the destination pool ${c.h.destinationRef} has ${after} bytes free; it had ${free} before the migration (${during} in PHASE1_DONE): the target was not discarded`, 'discardTarget');
    c.note(`the destination pool had ${free - during} bytes fewer free in PHASE1_DONE`);
  },
};

export const hostPathCrashInProgress: Check = {
  id: 'host-path-crash-in-progress',
  title: 'ferryd killed during a host-path copy and restarted: the copy resumes and the migration ends with the data moved',
  gate: both,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await startHost(c, share, { maxBandwidthBytesPerSec: c.slowBandwidth });
    // Killed as soon as the copy runs: ferryd counts bytes copied per batch flushed, so waiting for some would wait out a small share's only batch.
    const now = await c.waitFor(m.id, (x) => PAST_STARTING.has(x.state), 'IN_PROGRESS');
    if (!PAST_STARTING.has(now.state)) await c.failEnded(now, 'waiting for IN_PROGRESS');
    c.note(now.state === 'MIGRATION_STATE_IN_PROGRESS' ? `killed in IN_PROGRESS at ${now.progress.percent} %` : `phase 1 was done before the kill; the restart was in ${stateName(now.state)}`);
    await c.restartEngine();
    const resumed = await c.h.client.getMigration(m.id);
    expect(['MIGRATION_STATE_IN_PROGRESS', 'MIGRATION_STATE_PHASE1_DONE'].includes(resumed.state), `after the restart the migration is ${stateName(resumed.state)}`);
    await spread(c, share, 'after the restart');
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done after the restart');
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed');
    await c.expectMoved(share, before, 'after SUCCESS', 'promoteTarget');
  },
};

export const hostPathCrashInPhase1Done: Check = {
  id: 'host-path-crash-phase1-done',
  title: 'ferryd killed in PHASE1_DONE of a host-path migration and restarted: the migration completes with every write moved',
  gate: both,
  async run(c) {
    const share = await c.share();
    const before = await c.destinationListing();
    const m = await startHost(c, share);
    await c.waitState(m.id, 'PHASE1_DONE', 'phase 1 to be done');
    await spread(c, share, 'in PHASE1_DONE before the kill');
    await c.restartEngine();
    const resumed = await c.h.client.getMigration(m.id);
    expect(resumed.state === 'MIGRATION_STATE_PHASE1_DONE', `after the restart the migration is ${stateName(resumed.state)}, not PHASE1_DONE`);
    await spread(c, share, 'in PHASE1_DONE after the restart');
    await c.complete(m.id);
    await c.waitState(m.id, 'SUCCESS', 'the cutover to succeed after the restart');
    await c.expectMoved(share, before, 'after SUCCESS', 'promoteTarget');
  },
};

/** The data-path checks, in the order they run: direct calls first, then through ferryd, then the kills. */
export const DATA_PATH_CHECKS: readonly Check[] = [
  snapshotPointInTime,
  snapshotDelete,
  changedExtents,
  freezeHoldsWrites,
  freezeRefusesWrites,
  freezeLeaseEnds,
  targetRepeated,
  targetRefusesDamage,
  targetDigests,
  directHostMigration,
  hostPathMigration,
  hostPathCancel,
];

/** The data-path checks that kill ferryd, run with the other kills. */
export const DATA_PATH_CRASH_CHECKS: readonly Check[] = [hostPathCrashInProgress, hostPathCrashInPhase1Done];
