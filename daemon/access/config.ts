/**
 * The network settings of ferryd's configuration: TLS files, the auth
 * file, the audit log, and the rule that keeps a daemon safe by default.
 * Read like every other setting (daemon/config.ts): a flag wins over the
 * environment, which wins over the config file; paths in the file are
 * relative to it.
 *
 * Safe by default: a daemon that anyone on a network could reach must have
 * TLS and principals. A --listen that is not loopback (127.0.0.0/8, ::1,
 * localhost) or a unix socket, without --tls-cert, --tls-key and --auth,
 * stops ferryd with one line naming the flags it lacks, unless --insecure
 * is given.
 */
import { isAbsolute, resolve } from 'node:path';
import { isLoopback } from '../../lib/address.ts';
import type { TlsFiles } from './tls.ts';

/** The network settings. */
export interface AccessConfig {
  /** Server TLS; absent: plaintext. */
  tls?: TlsFiles;
  /** The principals file; absent: every caller is allowed. */
  auth?: string;
  /** Audit lines go here instead of ferryd's log. */
  auditLog?: string;
  /** Serve a non-loopback address without TLS and principals (logged as a warning at every start). */
  insecure: boolean;
}

/** The flags of these settings. */
export interface AccessFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  auth?: string;
  auditLog?: string;
  insecure?: boolean;
}

/** Their environment variables. */
export const ACCESS_ENV_VARS = {
  tlsCert: 'FERRY_TLS_CERT',
  tlsKey: 'FERRY_TLS_KEY',
  tlsClientCa: 'FERRY_TLS_CLIENT_CA',
  auth: 'FERRY_AUTH',
  auditLog: 'FERRY_AUDIT_LOG',
} as const;

/** What the config file's `tls` object may hold. */
const TLS_KEYS = { cert: 'tlsCert', key: 'tlsKey', clientCa: 'tlsClientCa' } as const;

/** Thrown for a bad network setting (daemon/config.ts turns it into its ConfigError). */
export class AccessConfigError extends Error {}

type Json = Record<string, unknown>;

/** Reads the network settings. `src` names the config file in messages; `fileDir` anchors its paths. */
export function accessConfig(flags: AccessFlags, env: NodeJS.ProcessEnv, file: Json, src: string, fileDir: string, cwd: string, listen: string): AccessConfig {
  const tlsFile = file.tls;
  if (tlsFile !== undefined && (typeof tlsFile !== 'object' || tlsFile === null || Array.isArray(tlsFile))) throw new AccessConfigError(`${src}: tls must be an object { cert, key, clientCa }`);
  for (const key of Object.keys((tlsFile ?? {}) as Json)) if (!(key in TLS_KEYS)) throw new AccessConfigError(`${src}: tls.${key} is not a setting (known: cert, key, clientCa)`);

  /** A path from its flag, variable or file entry: [absolute path, where it came from], or undefined. */
  const path = (flag: keyof typeof ACCESS_ENV_VARS, fromFile: unknown, fileKey: string): [string, string] | undefined => {
    const given = flags[flag];
    if (given !== undefined) return [resolve(cwd, given), `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`];
    const fromEnv = env[ACCESS_ENV_VARS[flag]];
    if (fromEnv) return [resolve(cwd, fromEnv), ACCESS_ENV_VARS[flag]];
    if (fromFile === undefined) return undefined;
    if (typeof fromFile !== 'string' || fromFile.length === 0) throw new AccessConfigError(`${src}: ${fileKey} must be a file path`);
    return [isAbsolute(fromFile) ? fromFile : resolve(fileDir, fromFile), src];
  };
  const fileTls = (tlsFile ?? {}) as Json;
  const cert = path('tlsCert', fileTls.cert, 'tls.cert');
  const key = path('tlsKey', fileTls.key, 'tls.key');
  const clientCa = path('tlsClientCa', fileTls.clientCa, 'tls.clientCa');
  const auth = path('auth', file.auth, 'auth');
  const auditLog = path('auditLog', file.auditLog, 'auditLog');

  if (cert && !key) throw new AccessConfigError(`${cert[1]}: a TLS certificate needs its key too (--tls-key, ${ACCESS_ENV_VARS.tlsKey} or tls.key)`);
  if (key && !cert) throw new AccessConfigError(`${key[1]}: a TLS key needs its certificate too (--tls-cert, ${ACCESS_ENV_VARS.tlsCert} or tls.cert)`);
  if (clientCa && !cert) throw new AccessConfigError(`${clientCa[1]}: a client CA is for TLS, which needs --tls-cert and --tls-key`);

  const insecureFile = file.insecure ?? false;
  if (typeof insecureFile !== 'boolean') throw new AccessConfigError(`${src}: insecure must be true or false`);
  const insecure = flags.insecure === true || insecureFile;

  if (!isLoopback(listen) && !insecure) {
    const missing = [...(cert ? [] : ['--tls-cert', '--tls-key']), ...(auth ? [] : ['--auth'])];
    if (missing.length > 0) {
      throw new AccessConfigError(
        `listen ${listen} is reachable from other machines: serving it needs ${missing.join(', ').replace(/, ([^,]*)$/, ' and $1')} (or --insecure to serve it without, which lets anyone who reaches the port start, complete and cancel migrations)`,
      );
    }
  }
  // Every key present, set or not: the daemon's config lists exactly its settings.
  return {
    tls: cert && key ? { cert: cert[0], key: key[0], ...(clientCa ? { clientCa: clientCa[0] } : {}) } : undefined,
    auth: auth?.[0],
    auditLog: auditLog?.[0],
    insecure,
  };
}
