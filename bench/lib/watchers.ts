/**
 * Many WatchMigration streams held as cheaply as this process can: a few
 * channels (each its own TCP connection, as a few separate watching
 * programs would have), raw grpc-js streams with the compiled API's method
 * path and request encoder, and a decoder that reads only the fields the
 * benchmarks look at (state, progress.copied_bytes, phase1_done_at) instead
 * of building the whole Migration object with its defaults. The first
 * message is also decoded the full way and compared, so a change to
 * migration.proto that this decoder missed fails the run instead of
 * measuring garbage.
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import type { Migration } from '../../client/client.ts';
import { serviceDefinition } from '../../lib/rpc.ts';

/** What a watcher sees of one value: the fields the benchmarks need. */
export interface Seen {
  state: Migration['state'];
  copiedBytes: number;
  /** The daemon's phase1_done_at, ms since the epoch; NaN while unset. */
  phase1DoneAtMs: number;
  /** When this process received it, ms since the epoch (Date.now(), the daemon's clock). */
  receivedAtMs: number;
}

/** MigrationState by number, as migration.proto numbers it. */
const STATES: readonly string[] = [
  'MIGRATION_STATE_UNSPECIFIED',
  'MIGRATION_STATE_STARTING',
  'MIGRATION_STATE_IN_PROGRESS',
  'MIGRATION_STATE_PHASE1_DONE',
  'MIGRATION_STATE_COMPLETING',
  'MIGRATION_STATE_SUCCESS',
  'MIGRATION_STATE_CANCELLING',
  'MIGRATION_STATE_CANCELLED',
  'MIGRATION_STATE_ERROR',
];

/** Field numbers in migration.proto: Migration.state, .progress, .phase1_done_at; Progress.copied_bytes; Timestamp.seconds, .nanos. */
const F = { state: 4, progress: 5, phase1DoneAt: 22, copiedBytes: 3, seconds: 1, nanos: 2 } as const;

/** A 64-bit varint as read: a number, or a Long when protobufjs found the long package. */
const toNumber = (v: unknown): number => (typeof v === 'number' ? v : (v as { toNumber(): number }).toNumber());

function timestampMs(r: protobuf.Reader, end: number): number {
  let seconds = 0;
  let nanos = 0;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === F.seconds) seconds = toNumber(r.int64());
    else if (tag >>> 3 === F.nanos) nanos = r.int32();
    else r.skipType(tag & 7);
  }
  return seconds * 1000 + nanos / 1e6;
}

/** Decodes the benchmark's fields of an encoded ferry.v1.Migration. */
export function decodeSeen(buf: Uint8Array): Omit<Seen, 'receivedAtMs'> {
  const r = protobuf.Reader.create(buf);
  let state = 0;
  let copiedBytes = 0;
  let phase1DoneAtMs = NaN;
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === F.state) state = r.int32();
    else if (field === F.progress) {
      const end = r.uint32() + r.pos;
      while (r.pos < end) {
        const t = r.uint32();
        if (t >>> 3 === F.copiedBytes) copiedBytes = toNumber(r.uint64());
        else r.skipType(t & 7);
      }
    } else if (field === F.phase1DoneAt) {
      const end = r.uint32() + r.pos;
      phase1DoneAtMs = timestampMs(r, end);
    } else r.skipType(tag & 7);
  }
  return { state: (STATES[state] ?? 'MIGRATION_STATE_UNSPECIFIED') as Migration['state'], copiedBytes, phase1DoneAtMs };
}

/** How one stream ended: null for a normal end (the migration was terminal) or a cancel by us. */
export type StreamEnd = grpc.ServiceError | null;

/** Watch streams over a few channels to one ferryd. */
export class WatcherFleet {
  /** Streams opened. */
  opened = 0;
  /** Messages received, all streams. */
  messages = 0;
  /** Set when the first message did not decode the same both ways. */
  selfCheck: string | null = null;
  private checked = false;
  private next = 0;
  private readonly channels: grpc.Client[];
  private readonly streams = new Set<grpc.ClientReadableStream<Seen>>();
  private readonly method: { path: string; requestSerialize: (value: object) => Buffer; responseDeserialize: (bytes: Buffer) => unknown };

  /** Opens `channels` channels to `address` (each with its own connection: a private subchannel pool). */
  constructor(address: string, channels: number) {
    const def = serviceDefinition('ferry.v1.MigrationService').WatchMigration!;
    this.method = { path: def.path, requestSerialize: def.requestSerialize as (value: object) => Buffer, responseDeserialize: def.responseDeserialize };
    this.channels = Array.from({ length: channels }, () => new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  }

  /** Number of channels. */
  get channelCount(): number {
    return this.channels.length;
  }

  /** Watches migration `id` on the next channel (round robin); `onValue` hears every value, `onEnd` how the stream ended. Returns a function that cancels it. */
  watch(id: string, onValue: (seen: Seen) => void, onEnd?: (end: StreamEnd) => void): () => void {
    const channel = this.channels[this.next++ % this.channels.length]!;
    const stream = channel.makeServerStreamRequest<{ id: string }, Seen>(this.method.path, this.method.requestSerialize, (bytes) => this.decode(bytes), { id });
    this.opened++;
    this.streams.add(stream);
    let ended = false;
    const end = (e: StreamEnd) => {
      if (ended) return;
      ended = true;
      this.streams.delete(stream);
      onEnd?.(e);
    };
    stream.on('data', (seen: Seen) => {
      this.messages++;
      onValue(seen);
    });
    stream.on('error', (err: grpc.ServiceError) => end(err.code === grpc.status.CANCELLED ? null : err));
    stream.on('end', () => end(null));
    return () => stream.cancel();
  }

  /** Cancels every open stream and closes the channels. */
  close(): void {
    for (const s of this.streams) s.cancel();
    this.streams.clear();
    for (const c of this.channels) c.close();
  }

  private decode(bytes: Buffer): Seen {
    // The clock of ferryd's phase1_done_at: the monotonic one (timeOrigin + now()) parts from it whenever the wall clock is adjusted.
    const receivedAtMs = Date.now();
    const seen = { ...decodeSeen(bytes), receivedAtMs };
    if (!this.checked) {
      this.checked = true;
      const full = this.method.responseDeserialize(bytes) as Migration;
      const ts = full.phase1DoneAt ? Number(full.phase1DoneAt.seconds) * 1000 + Number(full.phase1DoneAt.nanos) / 1e6 : NaN;
      const same = full.state === seen.state && full.progress.copiedBytes === seen.copiedBytes && (Number.isNaN(ts) ? Number.isNaN(seen.phase1DoneAtMs) : ts === seen.phase1DoneAtMs);
      if (!same) this.selfCheck = `lean decoder disagrees with the full one: ${JSON.stringify({ state: full.state, copied: full.progress.copiedBytes, ts })} vs ${JSON.stringify(seen)}`;
    }
    return seen;
  }
}
