/**
 * Who may reach ferryd's network port, put together once for the daemon:
 * TLS (tls.ts), the principals of --auth, re-read when the file changes
 * (principals.ts), the audit trail (audit.ts) and the access check
 * (interceptor.ts), as the credentials its port is bound with.
 *
 * Only the network port is checked. ferryd's own drivers reach the
 * embedded array over a unix socket in the data dir (daemon.ts), which is
 * as private as the data itself.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Log } from '../../lib/log.ts';
import { AuditTrail } from './audit.ts';
import { isLoopback } from '../../lib/address.ts';
import type { AccessConfig } from './config.ts';
import { accessInterceptor } from './interceptor.ts';
import { Principals } from './principals.ts';
import { PUBLIC_SERVICES } from './roles.ts';
import { ServerTls, TLS_RELOAD_MS } from './tls.ts';
import { watchFiles } from './watch-files.ts';

/** The network port's protection. */
export interface NetworkAccess {
  /** What the port is bound with: TLS or plaintext, with the access check. */
  credentials: grpc.ServerCredentials;
  /** What the drivers' socket is bound with: plaintext, serving the embedded array (and health, reflection) only. */
  driversCredentials: grpc.ServerCredentials;
  /** The TLS files in use, when TLS is on. */
  tls?: ServerTls;
  /** The principals in use; null without --auth. */
  principals(): Principals | null;
  /** Emits 'authReloaded' (the principals' count) when a changed auth file is in use, 'authReloadFailed' (the error) when it could not be. */
  events: EventEmitter;
  /** Stops watching the files and closes the audit file. */
  close(): void;
}

/** Principals known by certificate can never sign in to a daemon that asks for no client certificates: said once, at each load. */
function warnCertificatePrincipals(principals: Principals, path: string, config: AccessConfig, log: Log): void {
  if (principals.certificatePrincipals.length > 0 && !config.tls?.clientCa) {
    log.warn({ auth: path, principals: principals.certificatePrincipals }, 'principals known by certSubject cannot sign in: this ferryd asks for no client certificates (set --tls-client-ca)');
  }
}

/**
 * Sets up the port's protection; `first` are interceptors that run before
 * the access check (the metrics' counter, which must see refused calls'
 * codes). Throws TlsFileError or AuthFileError (one line) when the files
 * cannot be used.
 */
export function openAccess(config: AccessConfig & { listen: string }, log: Log, first: grpc.ServerInterceptor[] = [], reloadMs = TLS_RELOAD_MS): NetworkAccess {
  const accessLog = log.child({ component: 'access' });
  const events = new EventEmitter();
  let principals: Principals | null = null;
  let unwatchAuth = () => {};
  if (config.auth !== undefined) {
    const path = config.auth;
    principals = Principals.load(path);
    warnCertificatePrincipals(principals, path, config, accessLog);
    accessLog.info({ auth: path, principals: principals.size }, 'callers are checked against the auth file');
    unwatchAuth = watchFiles([path], reloadMs, () => {
      try {
        const next = Principals.load(path);
        warnCertificatePrincipals(next, path, config, accessLog);
        principals = next;
        accessLog.info({ auth: path, principals: next.size }, 'auth file reloaded');
        events.emit('authReloaded', next.size);
      } catch (err) {
        accessLog.warn({ auth: path, reason: (err as Error).message }, 'auth file changed but cannot be used; the previous principals stay');
        events.emit('authReloadFailed', err);
      }
    });
  }
  let tls: ServerTls | undefined;
  try {
    tls = config.tls ? new ServerTls(config.tls, accessLog, reloadMs) : undefined;
  } catch (err) {
    unwatchAuth();
    throw err;
  }
  if (!isLoopback(config.listen) && (!tls || !principals)) {
    const risk = !principals ? 'anyone who reaches this port can start, complete and cancel migrations' : "callers' tokens travel in clear text, for anyone on the path to read and reuse";
    accessLog.warn({ listen: config.listen, tls: tls !== undefined, auth: principals !== null }, `--insecure: serving ${config.listen} without ${!tls ? 'TLS' : ''}${!tls && !principals ? ' or ' : ''}${!principals ? '--auth' : ''}; ${risk}`);
  }
  const audit = new AuditTrail(accessLog, config.auditLog);
  const interceptor = accessInterceptor({ principals: () => principals, audit });
  const base = tls?.credentials ?? grpc.ServerCredentials.createInsecure();
  return {
    credentials: grpc.experimental.createServerCredentialsWithInterceptors(base, [...first, interceptor]),
    driversCredentials: grpc.experimental.createServerCredentialsWithInterceptors(grpc.ServerCredentials.createInsecure(), [driversOnly]),
    ...(tls ? { tls } : {}),
    principals: () => principals,
    events,
    close: () => {
      unwatchAuth();
      tls?.close();
      audit.close();
    },
  };
}

/** What the drivers' socket serves: the embedded array, for ferryd's drivers, and health and reflection. */
const DRIVERS_SOCKET_SERVICES: ReadonlySet<string> = new Set(['ferry.simulator.v1.SimulatorService', ...PUBLIC_SERVICES]);

/**
 * Keeps the drivers' socket to what ferryd's drivers need: a migration
 * started, completed or cancelled there would be neither checked nor
 * audited, so the migration API is refused, pointing to the network port.
 */
const driversOnly: grpc.ServerInterceptor = (descriptor, call) => {
  const service = descriptor.path.split('/')[1] ?? '';
  if (DRIVERS_SOCKET_SERVICES.has(service)) return new grpc.ServerInterceptingCall(call);
  return new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: () =>
          call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details: `${descriptor.path.slice(1)} is not served on ferryd's drivers' socket, which serves its own drivers the embedded array only; call it on ferryd's network port`, metadata: new grpc.Metadata() }),
      }),
  });
};
