/**
 * The access check of ferryd's network port, as a grpc-js server
 * interceptor: before a handler sees a call, the caller is known (a bearer
 * token in `authorization` metadata, else the client certificate's
 * subject) and its role checked against what the method needs
 * (roles.ts). A missing or unknown credential is UNAUTHENTICATED, a role
 * too low PERMISSION_DENIED naming the role needed; both carry Ferry's
 * ErrorInfo and `ferry-error-code` trailer like every other refusal, and
 * are audited. Mutating calls are audited when they end, with their
 * result code. Without principals (no --auth) every caller is allowed, as
 * nobody is known: ferryd then serves only loopback unless told otherwise
 * (config.ts), and still audits.
 */
import * as grpc from '@grpc/grpc-js';
import { ERROR_CODE_METADATA, FERRY_ERROR_DOMAIN } from '../../lib/api.ts';
import { statusObject } from '../../lib/rpc.ts';
import type { AuditEntry, AuditTrail } from './audit.ts';
import type { Principal, Principals } from './principals.ts';
import { includes, ruleFor } from './roles.ts';

/** What the check needs. `principals` null: no --auth, every caller allowed. */
export interface AccessOptions {
  principals: () => Principals | null;
  audit: AuditTrail;
}

type Refusal = { code: grpc.status.UNAUTHENTICATED | grpc.status.PERMISSION_DENIED; message: string; principal?: Principal };

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

function refusalStatus(refusal: Refusal, method: string, role: string): Partial<grpc.StatusObject> {
  const reason = grpc.status[refusal.code]!;
  return statusObject({ code: refusal.code, message: refusal.message, reason, domain: FERRY_ERROR_DOMAIN, info: { method, role }, trailers: { [ERROR_CODE_METADATA]: reason } });
}

/** Who is calling: a principal, or why the call is refused. */
function identify(principals: Principals, metadata: grpc.Metadata, call: grpc.ServerInterceptingCallInterface, method: string): Principal | Refusal {
  const header = metadata.get('authorization')[0];
  if (header !== undefined) {
    const token = typeof header === 'string' ? BEARER.exec(header)?.[1] : undefined;
    if (token === undefined) return { code: grpc.status.UNAUTHENTICATED, message: `the authorization metadata must be "Bearer <token>"` };
    return principals.byToken(token) ?? { code: grpc.status.UNAUTHENTICATED, message: 'the bearer token is not known to ferryd (see its --auth file)' };
  }
  const certificate = call.getAuthContext().sslPeerCertificate;
  if (certificate) {
    const subject = certificate.subject as unknown as Record<string, string | string[]>;
    const shown = Object.entries(subject).map(([k, v]) => `${k}=${String(v)}`).join(', ');
    return principals.byCertificate(subject) ?? { code: grpc.status.UNAUTHENTICATED, message: `the client certificate's subject "${shown}" names no principal of ferryd's --auth file` };
  }
  return { code: grpc.status.UNAUTHENTICATED, message: `${method} needs a credential: a bearer token (metadata "authorization: Bearer <token>") or a client certificate` };
}

const isRefusal = (v: Principal | Refusal): v is Refusal => 'code' in v;

/** The migration, "backend/share" and the destination ("backend#pool") a request or its answer names. */
function describe(request: Record<string, unknown> | undefined, response: Record<string, unknown> | undefined): Pick<AuditEntry, 'migration' | 'share' | 'destination'> {
  const out: Pick<AuditEntry, 'migration' | 'share' | 'destination'> = {};
  const from = { ...response, ...request };
  const share = (request?.share ?? response?.share) as { backend?: string; shareId?: string } | undefined;
  const dest = request?.destination ?? response?.destination;
  const id = (typeof response?.id === 'string' && response.id) || (typeof request?.id === 'string' && request.id) || (typeof from.jobId === 'string' && from.jobId);
  if (id) out.migration = id;
  if (share?.shareId) out.share = `${share.backend ?? ''}/${share.shareId}`;
  else if (typeof from.shareId === 'string' && from.shareId) out.share = typeof from.backend === 'string' && from.backend ? `${from.backend}/${from.shareId}` : from.shareId;
  if (typeof dest === 'string' && dest) out.destination = dest;
  else if (typeof from.destBackend === 'string' && from.destBackend) out.destination = `${from.destBackend}#${String(from.destPool ?? '')}`;
  return out;
}

/** The interceptor for ferryd's network port. */
export function accessInterceptor(options: AccessOptions): grpc.ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path.slice(1);
    const rule = ruleFor(descriptor.path);
    if (rule === null) return new grpc.ServerInterceptingCall(call);
    let principal: Principal | null = null;
    let request: Record<string, unknown> | undefined;
    let response: Record<string, unknown> | undefined;
    let audited = false;
    const audit = (code: grpc.status, message?: string) => {
      if (audited) return;
      audited = true;
      options.audit.write({
        principal: principal?.name ?? null,
        ...(principal ? { role: principal.role } : {}),
        peer: call.getPeer(),
        method,
        ...describe(request, response),
        code: grpc.status[code] ?? String(code),
        ...(code !== grpc.status.OK && message ? { message } : {}),
      });
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, proceed) => {
            const principals = options.principals();
            if (principals === null) return proceed(metadata);
            const who = identify(principals, metadata, call, method);
            let refusal: Refusal | undefined;
            if (isRefusal(who)) refusal = who;
            else if (!includes(who.role, rule.role)) refusal = { code: grpc.status.PERMISSION_DENIED, message: `${method} needs role ${rule.role}; ${who.name} has role ${who.role}`, principal: who };
            if (refusal) {
              principal = refusal.principal ?? null;
              audit(refusal.code, refusal.message);
              call.sendStatus(refusalStatus(refusal, method, rule.role) as grpc.StatusObject);
              return;
            }
            principal = who as Principal;
            proceed(metadata);
          },
          onReceiveMessage: (message, proceed) => {
            // The first message names what the call is about (a client stream's later ones carry data).
            if (rule.mutating && request === undefined && typeof message === 'object' && message !== null) request = message as Record<string, unknown>;
            proceed(message);
          },
        });
      },
      sendMessage: (message, next) => {
        if (rule.mutating && response === undefined && typeof message === 'object' && message !== null) response = message as Record<string, unknown>;
        next(message);
      },
      sendStatus: (status, next) => {
        if (rule.mutating) audit(status.code, status.details);
        next(status);
      },
    });
  };
}
