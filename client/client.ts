/**
 * A typed client for ferry.v1.MigrationService, and the one-shot migration
 * loop that the design puts in the client rather than the server: start,
 * wait for phase 1, complete, wait for the end. On a network it speaks TLS
 * and sends a bearer token with every call (FerryClientOptions, in
 * client/security.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { ERROR_CODE_METADATA } from '../lib/api.ts';
import { clientConstructor } from '../lib/rpc.ts';
import { decodeStatusDetails, STATUS_DETAILS_METADATA, type ErrorInfo } from '../lib/status.ts';
import { clientSecurity, explainConnectionFailure, type ClientSecurity, type ConnectionTrouble, type FerryClientOptions } from './security.ts';
import type { Backend__Output } from '../build/types/ferry/v1/Backend.ts';
import type { CheckCompatibilityRequest as CheckCompatibilityRequestMessage } from '../build/types/ferry/v1/CheckCompatibilityRequest.ts';
import type { CheckCompatibilityResponse__Output } from '../build/types/ferry/v1/CheckCompatibilityResponse.ts';
import type { ListBackendsResponse__Output } from '../build/types/ferry/v1/ListBackendsResponse.ts';
import type { ListMigrationsRequest as ListMigrationsRequestMessage } from '../build/types/ferry/v1/ListMigrationsRequest.ts';
import type { ListMigrationsResponse__Output } from '../build/types/ferry/v1/ListMigrationsResponse.ts';
import type { Migration__Output } from '../build/types/ferry/v1/Migration.ts';
import type { MigrationState__Output } from '../build/types/ferry/v1/MigrationState.ts';
import type { Progress__Output } from '../build/types/ferry/v1/Progress.ts';
import type { ShareRef__Output } from '../build/types/ferry/v1/ShareRef.ts';
import type { StartMigrationRequest as StartMigrationRequestMessage } from '../build/types/ferry/v1/StartMigrationRequest.ts';
import type { Timestamp__Output } from '../build/types/google/protobuf/Timestamp.ts';

export { ClientOptionError, type ConnectionTrouble, type FerryClientOptions } from './security.ts';

/** A migration's state as it travels: never MIGRATION_STATE_UNSPECIFIED (migration.proto). */
export type MigrationState = Exclude<MigrationState__Output, 'MIGRATION_STATE_UNSPECIFIED'>;

/** States a migration never leaves. */
export const TERMINAL: ReadonlySet<string> = new Set<MigrationState>(['MIGRATION_STATE_SUCCESS', 'MIGRATION_STATE_CANCELLED', 'MIGRATION_STATE_ERROR']);

/** google.protobuf.Timestamp. */
export type Timestamp = Timestamp__Output;

/** ferry.v1.Progress. */
export type Progress = Progress__Output;

/**
 * ferry.v1.Migration as ferryd sends it: the generated type, with what the
 * proto promises of every migration (`share` and `progress` always set,
 * `state` never UNSPECIFIED) in the type rather than checked by every reader.
 */
export type Migration = Omit<Migration__Output, 'share' | 'progress' | 'state'> & {
  share: ShareRef__Output;
  progress: Progress__Output;
  state: MigrationState;
};

/** A request message with its REQUIRED fields required: the generated input types leave every field optional. */
type WithRequired<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: NonNullable<T[P]> };

/** ferry.v1.StartMigrationRequest: `share` and `destination` are REQUIRED, the rest optional (the server checks). */
export type StartMigrationRequest = WithRequired<StartMigrationRequestMessage, 'share' | 'destination'>;

/** ferry.v1.CheckCompatibilityRequest: a start's share, destination and flags. */
export type CheckCompatibilityRequest = WithRequired<CheckCompatibilityRequestMessage, 'share' | 'destination'>;

/** ferry.v1.ListMigrationsRequest. */
export type ListMigrationsRequest = ListMigrationsRequestMessage;

/** ferry.v1.ListMigrationsResponse. */
export type MigrationPage = Omit<ListMigrationsResponse__Output, 'migrations'> & { migrations: Migration[] };

/** ferry.v1.Backend. */
export type Backend = Backend__Output;

/** ferry.v1.CheckCompatibilityResponse. */
export type CompatibilityReport = CheckCompatibilityResponse__Output;

/** An error from the daemon, with its gRPC status and Ferry's stable code. */
export class FerryCallError extends Error {
  constructor(
    readonly status: grpc.status,
    readonly code: string,
    message: string,
    /**
     * The `ferry-error-code` trailer, when ferryd sent one. Undefined when the
     * status came from the transport (no daemon reached) or from a server
     * that is not ferryd: this is how a caller tells "ferryd refused" from
     * "ferryd could not be reached" when both are UNAVAILABLE.
     */
    readonly trailer?: string,
    /** The google.rpc.ErrorInfo the daemon sent (reason, domain, metadata such as `migration` and `state`). */
    readonly errorInfo?: ErrorInfo,
    /**
     * Set when no connection could be made for a reason of TLS (a handshake
     * that failed, a plaintext client to a TLS server): which kind. The
     * status is then UNAVAILABLE and the message says the reason shortly.
     */
    readonly connection?: ConnectionTrouble,
  ) {
    super(message);
    this.name = 'FerryCallError';
  }
}

/**
 * The message of a gRPC error as people should read it. grpc-js ends its
 * UNAVAILABLE messages with "Resolution note: " even when it has no note;
 * cut here, once, so that no caller prints the empty label.
 */
function messageOf(e: grpc.ServiceError): string {
  return (e.details || e.message || '').replace(/\s*Resolution note:\s*$/, '');
}

/** The stable code in ferryd's `ferry-error-code` trailer, if it sent one. */
function errorCodeOf(err: unknown): string | undefined {
  const value = (err as { metadata?: grpc.Metadata }).metadata?.get(ERROR_CODE_METADATA)[0];
  return typeof value === 'string' ? value : undefined;
}

/** A grpc-js error as a FerryCallError; a connection that failed for a reason of TLS is said as `security` explains it. */
function wrap(err: unknown, security: ClientSecurity): FerryCallError {
  const e = err as grpc.ServiceError;
  const trailer = errorCodeOf(err);
  const details = e.metadata?.get(STATUS_DETAILS_METADATA)[0];
  const errorInfo = Buffer.isBuffer(details) ? decodeStatusDetails(details)?.errorInfo : undefined;
  const code = trailer ?? grpc.status[e.code ?? grpc.status.UNKNOWN] ?? 'UNKNOWN';
  const message = messageOf(e);
  const tls = e.code === grpc.status.UNAVAILABLE && trailer === undefined ? explainConnectionFailure(message, security) : undefined;
  return new FerryCallError(e.code ?? grpc.status.UNKNOWN, code, tls?.message ?? message, trailer, errorInfo, tls?.trouble);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** How `waitFor` and `migrate` wait. */
export interface WaitOptions {
  /** Stops the waiting (never the migration), rejecting with the signal's reason. */
  signal?: AbortSignal;
  /**
   * When the watch fails with UNAVAILABLE (ferryd restarting, or gone), watch
   * again for up to this many ms, with backoff; the migration resumes in the
   * restarted daemon. 0 (the default) rethrows at once.
   */
  reconnectMs?: number;
  /** Told once per lost watch, before reconnecting. */
  onReconnect?: (err: FerryCallError) => void;
}

let cachedCtor: grpc.ServiceClientConstructor | undefined;

/** A connection to one ferryd. */
export class FerryClient {
  private readonly stub: grpc.Client & Record<string, Function>;
  private readonly security: ClientSecurity;

  /**
   * `address` is "host:port" or "unix:path". `options` add TLS (cacert,
   * and cert with key for mutual TLS) and a bearer token sent with every
   * call (FerryClientOptions); they are checked here, so a file that cannot
   * be read or a certificate without its key throws a ClientOptionError
   * now, not at the first call.
   */
  constructor(
    readonly address: string,
    private readonly deadlineMs = 30_000,
    options: FerryClientOptions = {},
  ) {
    this.security = clientSecurity(options, address);
    cachedCtor ??= clientConstructor('ferry.v1.MigrationService');
    // A private subchannel pool: a client made right after ferryd restarted on the same address must not
    // inherit another client's subchannel that is still backing off from the old process.
    this.stub = new cachedCtor(address, this.security.credentials, { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & Record<string, Function>;
  }

  /**
   * Every call goes through here or `watch`, with the token's metadata: per
   * call, not as call credentials, which grpc-js sends only over TLS (a
   * token must also work on a plaintext loopback).
   */
  private unary<T>(method: string, request: object): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.stub[method]!.call(this.stub, request, this.security.metadata(), { deadline: Date.now() + this.deadlineMs }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(wrap(err, this.security)) : resolve(res),
      );
    });
  }

  startMigration(request: StartMigrationRequest): Promise<Migration> {
    return this.unary('StartMigration', request);
  }
  completeMigration(id: string): Promise<Migration> {
    return this.unary('CompleteMigration', { id });
  }
  cancelMigration(id: string): Promise<Migration> {
    return this.unary('CancelMigration', { id });
  }
  getMigration(id: string): Promise<Migration> {
    return this.unary('GetMigration', { id });
  }
  listMigrations(request: ListMigrationsRequest = {}): Promise<MigrationPage> {
    return this.unary('ListMigrations', request);
  }
  checkCompatibility(request: CheckCompatibilityRequest): Promise<CompatibilityReport> {
    return this.unary('CheckCompatibility', request);
  }
  listBackends(): Promise<ListBackendsResponse__Output> {
    return this.unary('ListBackends', {});
  }

  /** Every value of a migration until it is terminal. Breaking out of the loop cancels the stream. */
  async *watch(id: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Migration> {
    if (options.signal?.aborted) return;
    const stream = this.stub.WatchMigration!.call(this.stub, { id }, this.security.metadata()) as grpc.ClientReadableStream<Migration>;
    const onAbort = () => stream.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const value of stream) yield value as Migration;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && options.signal?.aborted) return;
      throw wrap(err, this.security);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  /**
   * Watches until `until` holds (or the migration is terminal); returns that
   * value. Rejects with the signal's reason when `signal` aborts first.
   */
  async waitFor(id: string, until: (m: Migration) => boolean, onUpdate?: (m: Migration) => void, options: WaitOptions = {}): Promise<Migration> {
    const { signal, reconnectMs = 0 } = options;
    let last: Migration | undefined;
    let lostAt: number | undefined;
    let backoffMs = 100;
    for (;;) {
      try {
        for await (const m of this.watch(id, { signal })) {
          last = m;
          lostAt = undefined;
          backoffMs = 100;
          onUpdate?.(m);
          if (until(m) || TERMINAL.has(m.state)) return m;
        }
        if (signal?.aborted) throw abortError(signal);
        break;
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        if (!(err instanceof FerryCallError) || err.status !== grpc.status.UNAVAILABLE || reconnectMs <= 0) throw err;
        if (lostAt === undefined) {
          lostAt = Date.now();
          options.onReconnect?.(err);
        }
        const left = lostAt + reconnectMs - Date.now();
        if (left <= 0) throw new FerryCallError(grpc.status.UNAVAILABLE, 'UNAVAILABLE', `lost the watch of ${id}, and ferryd at ${this.address} did not serve it again within ${reconnectMs} ms (last: ${err.message})`);
        await pause(Math.min(backoffMs, left), signal);
        backoffMs = Math.min(backoffMs * 2, 2_000);
      }
    }
    if (!last) throw new FerryCallError(grpc.status.UNAVAILABLE, 'UNAVAILABLE', `watch of ${id} ended without a value`);
    return last;
  }

  /**
   * The one-phase migration, done on the client: start, wait for phase 1,
   * complete, wait for the end. A cutover that runs past its window and rolls
   * back is asked again, up to `cutoverAttempts` times. Resolves with the
   * final migration (SUCCESS, CANCELLED or ERROR), or with the migration in
   * PHASE1_DONE when every cutover attempt ran past its window.
   *
   * `signal` stops the waiting (rejecting with the signal's reason), never
   * the migration: it goes on in the daemon, and `onUpdate` has seen its id.
   * `reconnectMs` and `onReconnect` are as in `waitFor`.
   */
  async migrate(request: StartMigrationRequest, options: { onUpdate?: (m: Migration) => void; cutoverAttempts?: number } & WaitOptions = {}): Promise<Migration> {
    let m = await this.startMigration(request);
    options.onUpdate?.(m);
    const attempts = options.cutoverAttempts ?? 3;
    const { signal, reconnectMs, onReconnect } = options;
    const wait: WaitOptions = { signal, reconnectMs, onReconnect };
    for (let attempt = 1; ; attempt++) {
      m = await this.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_PHASE1_DONE', options.onUpdate, wait);
      if (TERMINAL.has(m.state)) return m;
      if (options.signal?.aborted) throw abortError(options.signal);
      m = await this.completeMigration(m.id);
      options.onUpdate?.(m);
      m = await this.waitFor(m.id, (x) => x.state === 'MIGRATION_STATE_PHASE1_DONE', options.onUpdate, wait);
      if (TERMINAL.has(m.state) || attempt >= attempts) return m;
    }
  }

  /** Closes the connection. */
  close(): void {
    this.stub.close();
  }
}
