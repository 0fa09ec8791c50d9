/**
 * The `ferry` CLI's side of client/security.ts: the global flags --token
 * (or FERRY_TOKEN), --cacert, --cert and --key, and the hints its errors
 * end with when ferryd refused who the client is, or when no TLS connection
 * could be made. cli.ts adds the flags, passes what they give to
 * FerryClient, and says failures with these words.
 */
import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import type { ClientOptionError, ConnectionTrouble, FerryClientOptions } from './security.ts';

/** The security flags as commander gives them. */
export interface SecurityFlags {
  token?: string;
  cacert?: string;
  cert?: string;
  key?: string;
}

/** Adds the security flags to the program (global: every command takes them). */
export function securityFlags(program: Command): Command {
  return program
    .option('--token <token>', 'bearer token sent with every call (default: $FERRY_TOKEN; prefer FERRY_TOKEN: arguments show in ps)')
    .option('--cacert <file>', "PEM certificate of the CA that signed ferryd's certificate; turns on TLS")
    .option('--cert <file>', 'PEM client certificate for mutual TLS, with --key; turns on TLS (then, without --cacert, the public CAs check ferryd)')
    .option('--key <file>', 'PEM private key of --cert, unencrypted');
}

/** The help's paragraph on the security flags. */
export const SECURITY_HELP = `
Security: with any of --cacert, --cert or --key the connection uses TLS; --cert and --key together present a
client certificate (mutual TLS). The token (--token, else $FERRY_TOKEN) goes with every call as
"authorization: Bearer <token>", with or without TLS; prefer FERRY_TOKEN, since arguments show in ps.
`;

/** FerryClient's options from the flags, the token from FERRY_TOKEN when --token is not given. */
export function clientOptions(flags: SecurityFlags, env: Record<string, string | undefined>): FerryClientOptions {
  const options: FerryClientOptions = {};
  const token = flags.token ?? env.FERRY_TOKEN;
  if (token !== undefined) options.token = token;
  if (flags.cacert !== undefined) options.cacert = flags.cacert;
  if (flags.cert !== undefined) options.cert = flags.cert;
  if (flags.key !== undefined) options.key = flags.key;
  return options;
}

/** A ClientOptionError in the CLI's words: the flag, the file, why. */
export function optionProblem(err: ClientOptionError, flags: SecurityFlags): string {
  return err.describe((option) => (option === 'token' ? (flags.token === undefined ? 'FERRY_TOKEN' : '--token') : `--${option}`));
}

/** The hint after ferryd's refusal of who the caller is (UNAUTHENTICATED, PERMISSION_DENIED); undefined for other refusals. */
export function refusalHint(status: grpc.status, options: FerryClientOptions): string | undefined {
  if (status === grpc.status.UNAUTHENTICATED) {
    if (options.token !== undefined) return 'check --token or FERRY_TOKEN';
    if (options.cert !== undefined) return "use a certificate whose subject is a principal in ferryd's --auth file, or a token";
    return 'set --token or FERRY_TOKEN, or give a client certificate with --cert and --key';
  }
  if (status === grpc.status.PERMISSION_DENIED) return 'use a token or certificate whose principal has that role';
  return undefined;
}

/** The hint after a connection that failed for a reason of TLS. */
export function connectionHint(trouble: ConnectionTrouble): string {
  switch (trouble) {
    case 'server-not-trusted':
      return "is --cacert the CA that signed ferryd's certificate, and does that certificate name the host in --server?";
    case 'client-cert-required':
      return 'ferryd wants mutual TLS: give --cert and --key';
    case 'client-cert-refused':
      return "give --cert and --key of a certificate valid now and signed by the CA of ferryd's --tls-client-ca";
    case 'server-not-tls':
      return 'is ferryd started with --tls-cert? if not, leave out --cacert, --cert and --key';
    case 'server-may-want-tls':
      return 'if ferryd serves TLS, give --cacert';
    case 'tls':
      return 'check --cacert, --cert and --key';
  }
}
