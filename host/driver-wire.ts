/**
 * ferry.driver.v1 on the wire and the in-process driver contract
 * (plugins/api/driver.ts), converted both ways: one place for each rule, used
 * by the remote driver (ferryd's side) and by the bridge that serves a module
 * driver over DriverService (the driver's side).
 *
 * - A remote driver's checkpoint is opaque bytes. ferryd keeps it in its
 *   record as `{ driverBytes: "<base64>" }`, and as null for empty bytes.
 * - The stable Ferry code of a failure travels as google.rpc.ErrorInfo
 *   `reason`; without one, the gRPC status says it (driver.proto's table).
 */
import * as grpc from '@grpc/grpc-js';
import {
  FerryError,
  isErrorCode,
  MAX_EXTENT_DATA_BYTES,
  type Capabilities,
  type ChangedExtents,
  type Checkpoint,
  type Driver,
  type DriverProgress,
  type ErrorCode,
  type Extent,
  type ExtentData,
  type ExtentDigest,
  type MigrationSpec,
  type SnapshotInfo,
} from '../plugins/api/index.ts';
import type { Capabilities as WireCapabilities } from '../build/types/ferry/driver/v1/Capabilities.ts';
import type { Extent as WireExtent, Extent__Output as WireExtentOut } from '../build/types/ferry/driver/v1/Extent.ts';
import type { ExtentData as WireExtentData, ExtentData__Output as WireExtentDataOut } from '../build/types/ferry/driver/v1/ExtentData.ts';
import type { ExtentDigest as WireDigest, ExtentDigest__Output as WireDigestOut } from '../build/types/ferry/driver/v1/ExtentDigest.ts';
import type { Features as WireFeatures } from '../build/types/ferry/driver/v1/Features.ts';
import type { ListChangedExtentsResponse as WireChanged, ListChangedExtentsResponse__Output as WireChangedOut } from '../build/types/ferry/driver/v1/ListChangedExtentsResponse.ts';
import type { Snapshot as WireSnapshot, Snapshot__Output as WireSnapshotOut } from '../build/types/ferry/driver/v1/Snapshot.ts';
import type { MigrationSpec as WireSpec, MigrationSpec__Output as WireSpecOut } from '../build/types/ferry/driver/v1/MigrationSpec.ts';
import type { Progress as WireProgress, Progress__Output as WireProgressOut } from '../build/types/ferry/driver/v1/Progress.ts';
import type { StatusMapper } from '../lib/rpc.ts';
import { decodeStatusDetails, STATUS_DETAILS_METADATA } from '../lib/status.ts';
import { bounded } from './untrusted.ts';

/** The full name of the driver service, and the health service name a driver process serves. */
export const DRIVER_SERVICE = 'ferry.driver.v1.DriverService';

/** The ErrorInfo domain the bridge sends (a driver may use any domain). */
export const DRIVER_ERROR_DOMAIN = 'ferry.driver.v1';

// ---------------------------------------------------------------- checkpoints

/** The record's form of a remote driver's checkpoint. */
export interface RemoteCheckpoint {
  driverBytes: string;
}

/** Bytes a remote driver returned, as ferryd keeps them: null for none. */
export function checkpointFromWire(bytes: Uint8Array | undefined | null): Checkpoint {
  if (!bytes || bytes.length === 0) return null;
  return { driverBytes: Buffer.from(bytes).toString('base64') } satisfies RemoteCheckpoint;
}

/**
 * The bytes to send for a checkpoint in ferryd's record: the driver's own
 * bytes back, empty for null. A checkpoint of another shape (the backend's
 * plugin was a module before) goes as its JSON.
 */
export function checkpointToWire(checkpoint: Checkpoint): Buffer {
  if (checkpoint === null) return Buffer.alloc(0);
  const keys = Object.keys(checkpoint);
  if (keys.length === 1 && typeof checkpoint.driverBytes === 'string') return Buffer.from(checkpoint.driverBytes, 'base64');
  return Buffer.from(JSON.stringify(checkpoint));
}

/** The bridge's side: a module driver's JSON checkpoint as bytes, and back. */
export const jsonCheckpoint = {
  encode: (checkpoint: Checkpoint): Buffer => (checkpoint === null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(checkpoint))),
  decode: (bytes: Uint8Array): Checkpoint => (bytes.length === 0 ? null : (JSON.parse(Buffer.from(bytes).toString('utf8')) as Checkpoint)),
};

// ---------------------------------------------------------------- messages

/** A migration as the driver service carries it. */
export function specToWire(m: MigrationSpec): WireSpec {
  return {
    id: m.id,
    sourceBackend: m.source.backend,
    shareId: m.source.shareId,
    destinationBackend: m.destination.backend,
    destinationPool: m.destination.pool,
    writable: m.writable,
    nondisruptive: m.nondisruptive,
    preserveMetadata: m.preserveMetadata,
    preserveSnapshots: m.preserveSnapshots,
    newShareType: m.newShareType,
    maxBandwidthBytesPerSec: m.maxBandwidthBytesPerSec,
    maxDowntimeMs: m.maxDowntimeMs,
    cutoverAction: m.cutoverAction === 'force' ? 'CUTOVER_ACTION_FORCE' : 'CUTOVER_ACTION_ABORT',
    dataPath: m.dataPath === 'host' ? 'DATA_PATH_HOST' : 'DATA_PATH_DRIVER',
  };
}

/** A migration as the in-process contract has it. */
export function specFromWire(m: WireSpecOut): MigrationSpec {
  return {
    id: m.id,
    source: { backend: m.sourceBackend, shareId: m.shareId },
    destination: { backend: m.destinationBackend, pool: m.destinationPool },
    writable: m.writable,
    nondisruptive: m.nondisruptive,
    preserveMetadata: m.preserveMetadata,
    preserveSnapshots: m.preserveSnapshots,
    newShareType: m.newShareType,
    maxBandwidthBytesPerSec: m.maxBandwidthBytesPerSec,
    maxDowntimeMs: m.maxDowntimeMs,
    cutoverAction: m.cutoverAction === 'CUTOVER_ACTION_FORCE' ? 'force' : 'abort',
    dataPath: m.dataPath === 'DATA_PATH_HOST' ? 'host' : 'driver',
  };
}

/** Capabilities from the wire; a missing message honours nothing. */
export function capabilitiesFromWire(c: WireCapabilities | null | undefined): Capabilities {
  return { writable: c?.writable === true, nondisruptive: c?.nondisruptive === true, preserveMetadata: c?.preserveMetadata === true, preserveSnapshots: c?.preserveSnapshots === true };
}

/** Progress from the wire; the warning only when set. */
export function progressFromWire(p: WireProgressOut | null | undefined): DriverProgress {
  const out: DriverProgress = {
    totalBytes: p?.totalBytes ?? 0,
    copiedBytes: p?.copiedBytes ?? 0,
    dirtyBytes: p?.dirtyBytes ?? 0,
    dirtyRateBytesPerSec: p?.dirtyRateBytesPerSec ?? 0,
    throughputBytesPerSec: p?.throughputBytesPerSec ?? 0,
    iteration: p?.iteration ?? 0,
    etaSeconds: p?.etaSeconds ?? 0,
  };
  if (p?.warning) out.warning = p.warning;
  return out;
}

/** Progress for the wire (whole numbers, as the proto's integers need). */
export function progressToWire(p: DriverProgress): WireProgress {
  const n = (v: number) => Math.max(0, Math.round(v));
  return {
    totalBytes: n(p.totalBytes),
    copiedBytes: n(p.copiedBytes),
    dirtyBytes: n(p.dirtyBytes),
    dirtyRateBytesPerSec: n(p.dirtyRateBytesPerSec),
    throughputBytesPerSec: n(p.throughputBytesPerSec),
    iteration: n(p.iteration),
    etaSeconds: n(p.etaSeconds),
    warning: p.warning ?? '',
  };
}

export { fromStruct, toStruct } from '../lib/struct.ts';

/** CompleteResponse.Status as the in-process contract spells CompleteResult's status. */
const COMPLETE_STATUSES: Readonly<Record<string, 'done' | 'in_progress' | 'aborted'>> = { STATUS_DONE: 'done', STATUS_IN_PROGRESS: 'in_progress', STATUS_ABORTED: 'aborted' };

/** A CompleteResponse status (its enum name) in the contract's spelling; undefined for any other value. */
export function completeStatusFromWire(status: string): 'done' | 'in_progress' | 'aborted' | undefined {
  return Object.hasOwn(COMPLETE_STATUSES, status) ? COMPLETE_STATUSES[status] : undefined;
}

// ---------------------------------------------------------------- data path

/** The optional parts of the contract a backend serves (OpenBackendResponse.features). */
export interface Features {
  dataSource: boolean;
  dataDestination: boolean;
  /** WatchChanges (Driver.watchChanges). */
  changes: boolean;
}

/** No optional part: what an unset `features` means. */
export const NO_FEATURES: Features = Object.freeze({ dataSource: false, dataDestination: false, changes: false });

/** The wire name of each feature, for messages. */
export const FEATURE_WIRE_NAMES: Record<keyof Features, string> = { dataSource: 'data_source', dataDestination: 'data_destination', changes: 'changes' };

/** The bridge's side: what a module driver serves, from the members it has. */
export function featuresOf(driver: Driver): WireFeatures {
  return { dataSource: driver.dataSource !== undefined, dataDestination: driver.dataDestination !== undefined, changes: typeof driver.watchChanges === 'function' };
}

/** Features from the wire; a missing message serves none. */
export function featuresFromWire(f: WireFeatures | null | undefined): Features {
  return { dataSource: f?.dataSource === true, dataDestination: f?.dataDestination === true, changes: f?.changes === true };
}

/** An extent for the wire. */
export const extentToWire = (e: Extent): WireExtent => ({ offset: e.offset, length: e.length });

/** An extent from the wire. */
export const extentFromWire = (e: WireExtentOut): Extent => ({ offset: e.offset, length: e.length });

/** Extent data for the wire; the bytes are not copied. */
export function extentDataToWire(e: ExtentData): WireExtentData {
  return { offset: e.offset, data: Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength), crc32c: e.crc32c };
}

/** Extent data from the wire (the message's own Buffer, not copied). */
export const extentDataFromWire = (e: WireExtentDataOut): ExtentData => ({ offset: e.offset, data: e.data, crc32c: e.crc32c });

/** A snapshot for the wire. */
export function snapshotToWire(s: SnapshotInfo): WireSnapshot {
  return { sizeBytes: s.sizeBytes, metadata: { ...s.metadata }, shareType: s.shareType, blockSizeBytes: s.blockSizeBytes };
}

/** A snapshot from the wire. */
export function snapshotFromWire(s: WireSnapshotOut): SnapshotInfo {
  return { sizeBytes: s.sizeBytes, metadata: { ...s.metadata }, shareType: s.shareType, blockSizeBytes: s.blockSizeBytes };
}

/** A page of changed extents for the wire. */
export const changedToWire = (c: ChangedExtents): WireChanged => ({ extents: c.extents.map(extentToWire), nextOffset: c.nextOffset });

/** A page of changed extents from the wire. */
export const changedFromWire = (c: WireChangedOut): ChangedExtents => ({ extents: c.extents.map(extentFromWire), nextOffset: c.nextOffset });

/** A digest for the wire. */
export const digestToWire = (d: ExtentDigest): WireDigest => ({ offset: d.offset, length: d.length, crc32c: d.crc32c });

/** A digest from the wire. */
export const digestFromWire = (d: WireDigestOut): ExtentDigest => ({ offset: d.offset, length: d.length, crc32c: d.crc32c });

const isOffset = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * What is wrong with one piece of extent data on its own (bytes 1 to
 * MAX_EXTENT_DATA_BYTES, a whole non-negative offset, a CRC-32C that is a
 * uint32), or undefined when nothing is. Both ends of the wire check it.
 */
export function extentDataProblem(piece: unknown): string | undefined {
  if (typeof piece !== 'object' || piece === null) return 'a piece must be an object { offset, data, crc32c }';
  const { offset, data, crc32c } = piece as Record<string, unknown>;
  if (!isOffset(offset)) return `offset must be a whole number >= 0, got ${typeof offset === 'number' ? offset : typeof offset}`;
  if (!(data instanceof Uint8Array)) return 'data must be a Uint8Array';
  if (data.byteLength === 0 || data.byteLength > MAX_EXTENT_DATA_BYTES) return `data must be 1 to ${MAX_EXTENT_DATA_BYTES} bytes, got ${data.byteLength}`;
  if (typeof crc32c !== 'number' || !Number.isInteger(crc32c) || crc32c < 0 || crc32c > 0xffffffff) return `crc32c must be an unsigned 32-bit number, got ${typeof crc32c === 'number' ? crc32c : typeof crc32c}`;
  return undefined;
}

/**
 * Follows the pieces of a ReadExtents answer against the extents asked:
 * each piece must be well-formed and start where the previous one ended,
 * within the extent being read, so that together they cover each extent
 * exactly, in the order asked. `accept` and `finish` answer what is wrong,
 * or undefined.
 */
export class ExtentCursor {
  private index = 0;
  /** Where the next piece must start, within extents[index]. */
  private next: number;

  constructor(private readonly extents: readonly Extent[]) {
    this.next = extents[0]?.offset ?? 0;
  }

  /** Checks the next piece and moves past it. */
  accept(piece: unknown): string | undefined {
    const problem = extentDataProblem(piece);
    if (problem) return `a piece for extent ${this.index}: ${problem}`;
    const { offset, data } = piece as ExtentData;
    const extent = this.extents[this.index];
    if (!extent) return `a piece at offset ${offset} came after every extent asked was covered`;
    if (offset !== this.next) return `a piece at offset ${offset} where ${this.next} was next (extent ${this.index}: offset ${extent.offset}, length ${extent.length}); pieces cover each extent in order`;
    const end = extent.offset + extent.length;
    if (offset + data.byteLength > end) return `a piece at offset ${offset} of ${data.byteLength} bytes runs past the end of extent ${this.index} (offset ${extent.offset}, length ${extent.length})`;
    this.next = offset + data.byteLength;
    if (this.next === end) {
      this.index++;
      this.next = this.extents[this.index]?.offset ?? 0;
    }
    return undefined;
  }

  /** Checks that the pieces seen covered every extent asked. */
  finish(): string | undefined {
    if (this.index >= this.extents.length) return undefined;
    return `the stream ended at offset ${this.next} of extent ${this.index} of ${this.extents.length} (offset ${this.extents[this.index]!.offset}, length ${this.extents[this.index]!.length}): pieces must cover every extent asked`;
  }
}

// ---------------------------------------------------------------- errors

/** The codes a driver may answer with (driver.proto's table); each is also a gRPC status of the same name. */
const DRIVER_CODES: ReadonlyMap<ErrorCode, grpc.status> = new Map<ErrorCode, grpc.status>([
  ['INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
  ['NOT_FOUND', grpc.status.NOT_FOUND],
  ['ALREADY_EXISTS', grpc.status.ALREADY_EXISTS],
  ['FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
  ['UNIMPLEMENTED', grpc.status.UNIMPLEMENTED],
  ['RESOURCE_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
  ['UNAVAILABLE', grpc.status.UNAVAILABLE],
  ['DEADLINE_EXCEEDED', grpc.status.DEADLINE_EXCEEDED],
  ['DATA_LOSS', grpc.status.DATA_LOSS],
]);

/**
 * The Ferry code of a remote driver's failed call: the ErrorInfo reason if
 * it is one of driver.proto's codes, else the gRPC status if it is. A call
 * the driver's side cancelled (CANCELLED: a server stopping with calls in
 * flight, as driver.proto allows on SIGTERM) is UNAVAILABLE, made again;
 * ferryd's own cancellations never get here. Anything else (UNKNOWN,
 * INTERNAL, an unknown reason, ...) is DRIVER_ERROR.
 */
export function codeOfStatus(err: Partial<grpc.StatusObject>): ErrorCode {
  const details = err.metadata?.get(STATUS_DETAILS_METADATA)[0];
  const reason = details instanceof Buffer ? decodeStatusDetails(details)?.errorInfo?.reason : undefined;
  if (reason !== undefined && isErrorCode(reason) && DRIVER_CODES.has(reason)) return reason;
  for (const [code, status] of DRIVER_CODES) if (status === err.code) return code;
  if (err.code === grpc.status.CANCELLED) return 'UNAVAILABLE';
  return 'DRIVER_ERROR';
}

/** A failed remote call as the FerryError the guard passes on; the driver's text bounded. */
export function errorFromStatus(err: Partial<grpc.StatusObject>, call: string): FerryError {
  const code = codeOfStatus(err);
  const status = grpc.status[err.code ?? grpc.status.UNKNOWN] ?? String(err.code);
  return new FerryError(code, `${call} answered ${status}: ${bounded(err.details ?? '')}`);
}

/**
 * The bridge's side: what a module driver threw, as the status a driver
 * answers with (the Ferry code as ErrorInfo reason). Anything but a
 * FerryError with one of driver.proto's codes is DRIVER_ERROR (INTERNAL),
 * logged, its text kept from the wire.
 */
export const driverStatusMapper: StatusMapper = (err) => {
  const ferry = err instanceof FerryError && isErrorCode(err.code) && DRIVER_CODES.has(err.code) ? err : undefined;
  if (!ferry) {
    const known = err instanceof FerryError && isErrorCode(err.code);
    return {
      code: grpc.status.INTERNAL,
      message: known ? bounded((err as FerryError).message, 2_000) : 'the driver failed with an unexpected error (see its log)',
      reason: 'DRIVER_ERROR',
      domain: DRIVER_ERROR_DOMAIN,
      logged: !known,
    };
  }
  return { code: DRIVER_CODES.get(ferry.code)!, message: bounded(ferry.message, 2_000), reason: ferry.code, domain: DRIVER_ERROR_DOMAIN, info: ferry.details };
};
