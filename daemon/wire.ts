/**
 * The boundary between the wire (ferry.v1 messages as proto-loader gives
 * them: camelCase, enums as names, defaults filled in; their types are
 * generated from the proto into build/types/) and the engine: request checks
 * that name the faulty field, and record-to-message conversion.
 *
 * An enum value this build does not know arrives as its number, which the
 * generated types do not say: the checks below read enums with String().
 */
import type { CheckCompatibilityRequest__Output } from '../build/types/ferry/v1/CheckCompatibilityRequest.ts';
import type { ListMigrationsRequest__Output } from '../build/types/ferry/v1/ListMigrationsRequest.ts';
import type { Migration__Output } from '../build/types/ferry/v1/Migration.ts';
import type { MigrationState__Output } from '../build/types/ferry/v1/MigrationState.ts';
import type { ShareRef__Output } from '../build/types/ferry/v1/ShareRef.ts';
import type { StartMigrationRequest__Output } from '../build/types/ferry/v1/StartMigrationRequest.ts';
import type { Timestamp__Output } from '../build/types/google/protobuf/Timestamp.ts';
import { FerryError, type CutoverAction, type DataPath } from '../plugins/api/index.ts';
import type { StartInput } from './engine.ts';
import { isMigrationId } from '../host/ids.ts';
import { STATES, type MigrationRecord, type State } from './migration.ts';

const invalid = (message: string) => new FerryError('INVALID_ARGUMENT', message);

/** Checks a name-like field: present, at most 255 characters, no control characters. */
export function requireName(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${field} is required`);
  if (value.length > 255) throw invalid(`${field} is longer than 255 characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalid(`${field} contains control characters`);
  return value;
}

/** The longest id any daemon makes, with room to spare; longer ones are refused unread. */
export const MAX_ID_BYTES = 128;

/**
 * Checks a migration id field. Ids are opaque to clients (as CSI's volume
 * ids are): an id that merely names no migration is the engine's NOT_FOUND,
 * and only an id no daemon could have made is INVALID_ARGUMENT — empty,
 * longer than MAX_ID_BYTES, or with a character outside printable ASCII.
 */
export function requireId(value: unknown, field = 'id'): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${field} is required`);
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_ID_BYTES) throw invalid(`${field} is ${bytes} bytes long; migration ids are at most ${MAX_ID_BYTES}`);
  if (!/^[\x20-\x7e]+$/.test(value)) throw invalid(`${field} contains a character that is not printable ASCII; migration ids never do`);
  return value;
}

/** Parses "backend#pool", or Manila's "host@backend#pool" (the host is ignored). */
export function parseDestination(value: unknown, field = 'destination'): { backend: string; pool: string } {
  const text = requireName(value, field);
  const m = /^(?:[^@#]+@)?([^@#]+)#([^@#]+)$/.exec(text);
  if (!m) throw invalid(`${field} "${text}" must be "backend#pool" (or Manila's "host@backend#pool")`);
  return { backend: m[1]!, pool: m[2]! };
}

function requireShare(share: ShareRef__Output | null | undefined): ShareRef__Output {
  if (!share) throw invalid('share is required (share.backend and share.share_id)');
  return { backend: requireName(share.backend, 'share.backend'), shareId: requireName(share.shareId, 'share.share_id') };
}

const CUTOVER_ACTIONS: Record<string, CutoverAction> = {
  CUTOVER_ACTION_UNSPECIFIED: 'abort',
  CUTOVER_ACTION_ABORT: 'abort',
  CUTOVER_ACTION_FORCE: 'force',
};

const DATA_PATHS: Record<string, DataPath | undefined> = {
  DATA_PATH_UNSPECIFIED: undefined,
  DATA_PATH_DRIVER: 'driver',
  DATA_PATH_HOST: 'host',
};

/** Checks a StartMigrationRequest and turns it into what the engine takes. */
export function parseStart(req: StartMigrationRequest__Output, defaultMaxDowntimeMs: number): StartInput {
  const share = requireShare(req.share);
  const destination = parseDestination(req.destination);
  if (req.requestId.length > 128) throw invalid('request_id is longer than 128 characters');
  if (req.newShareType.length > 255) throw invalid('new_share_type is longer than 255 characters');
  const action = CUTOVER_ACTIONS[String(req.cutoverAction)];
  if (!action) throw invalid(`cutover_action ${JSON.stringify(req.cutoverAction)} is not a CutoverAction`);
  if (!Number.isSafeInteger(req.maxBandwidthBytesPerSec)) throw invalid('max_bandwidth_bytes_per_sec is too large');
  const pathName = String(req.dataPath ?? 'DATA_PATH_UNSPECIFIED');
  if (!Object.hasOwn(DATA_PATHS, pathName)) throw invalid(`data_path ${JSON.stringify(req.dataPath)} is not a DataPath (DATA_PATH_DRIVER or DATA_PATH_HOST)`);
  const dataPath = DATA_PATHS[pathName];
  return {
    source: share,
    destination,
    writable: req.writable,
    nondisruptive: req.nondisruptive,
    preserveMetadata: req.preserveMetadata,
    preserveSnapshots: req.preserveSnapshots,
    newShareType: req.newShareType,
    requestId: req.requestId,
    maxBandwidthBytesPerSec: req.maxBandwidthBytesPerSec,
    maxDowntimeMs: req.maxDowntimeMs > 0 ? req.maxDowntimeMs : defaultMaxDowntimeMs,
    cutoverAction: action,
    // Absent when not asked for, so that a request's fingerprint is what it was before the field existed.
    ...(dataPath ? { dataPath } : {}),
  };
}

/** Checks a CheckCompatibilityRequest (the same fields as a start, minus options; data_path as asked). */
export function parseCheck(req: CheckCompatibilityRequest__Output, defaultMaxDowntimeMs: number): StartInput {
  return parseStart({ ...req, newShareType: '', requestId: '', maxBandwidthBytesPerSec: 0, maxDowntimeMs: 0, cutoverAction: 'CUTOVER_ACTION_UNSPECIFIED' }, defaultMaxDowntimeMs);
}

const PREFIX = 'MIGRATION_STATE_';

/** A state as it travels. */
const wireState = (state: State): MigrationState__Output => `${PREFIX}${state}`;

/** The page size when none is asked for, and the most allowed. */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

/** Checks a ListMigrationsRequest. */
export function parseList(req: ListMigrationsRequest__Output): { state?: State; backend?: string; limit: number; after?: string } {
  const out: { state?: State; backend?: string; limit: number; after?: string } = { limit: DEFAULT_PAGE_SIZE };
  const state = String(req.state);
  if (state !== `${PREFIX}UNSPECIFIED`) {
    const name = state.startsWith(PREFIX) ? state.slice(PREFIX.length) : '';
    if (!(STATES as readonly string[]).includes(name)) throw invalid(`state ${JSON.stringify(req.state)} is not a MigrationState`);
    out.state = name as State;
  }
  if (req.backend) out.backend = requireName(req.backend, 'backend');
  if (!Number.isInteger(req.pageSize) || req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) throw invalid(`page_size must be 0 to ${MAX_PAGE_SIZE}, got ${req.pageSize}`);
  if (req.pageSize > 0) out.limit = req.pageSize;
  if (req.pageToken) out.after = decodePageToken(req.pageToken);
  return out;
}

/** A page token: the last id of the page, opaque to callers. */
export function encodePageToken(lastId: string): string {
  return Buffer.from(`after:${lastId}`).toString('base64url');
}

function decodePageToken(token: string): string {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  const id = text.startsWith('after:') ? text.slice('after:'.length) : '';
  if (!isMigrationId(id)) throw invalid('page_token was not returned by this daemon; start again without it');
  return id;
}

function timestamp(ms: number | undefined): Timestamp__Output | null {
  if (ms === undefined) return null;
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** A record as a ferry.v1.Migration message. */
export function toWireMigration(r: MigrationRecord): Migration__Output {
  let wire = wireForms.get(r);
  if (!wire) wireForms.set(r, (wire = wireForm(r)));
  return wire;
}

/**
 * The wire form of each record the engine shows, made once: what it shows
 * is a written copy that nothing changes (engine.ts), and ten watchers of
 * one migration would otherwise convert each change ten times.
 */
const wireForms = new WeakMap<MigrationRecord, Migration__Output>();

function wireForm(r: MigrationRecord): Migration__Output {
  const s = r.spec;
  return {
    id: r.id,
    share: { backend: s.source.backend, shareId: s.source.shareId },
    destination: `${s.destination.backend}#${s.destination.pool}`,
    state: wireState(r.state),
    progress: { ...r.progress, warning: r.progress.warning ?? '', recopiedBytes: r.progress.recopiedBytes ?? 0 },
    writable: s.writable,
    nondisruptive: s.nondisruptive,
    preserveMetadata: s.preserveMetadata,
    preserveSnapshots: s.preserveSnapshots,
    newShareType: s.newShareType,
    requestId: r.requestId,
    maxBandwidthBytesPerSec: s.maxBandwidthBytesPerSec,
    maxDowntimeMs: s.maxDowntimeMs,
    cutoverAction: s.cutoverAction === 'force' ? 'CUTOVER_ACTION_FORCE' : 'CUTOVER_ACTION_ABORT',
    dataPath: s.dataPath === 'host' ? 'DATA_PATH_HOST' : 'DATA_PATH_DRIVER',
    createdAt: timestamp(r.createdAt),
    startedAt: timestamp(r.startedAt),
    phase1DoneAt: timestamp(r.phase1DoneAt),
    completingAt: timestamp(r.completingAt),
    cancellingAt: timestamp(r.cancellingAt),
    finishedAt: timestamp(r.finishedAt),
    updatedAt: timestamp(r.updatedAt),
    error: r.error ?? null,
    cutover: r.cutover ?? null,
    lastCutoverAbort: r.lastCutoverAbort ?? null,
    stuck: r.stuck ?? null,
  };
}
