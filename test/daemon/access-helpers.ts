/**
 * For the access tests: a PKI and an auth file with a principal of each
 * role, and raw gRPC calls of any method of the daemon's services with a
 * chosen credential, so that every RPC can be tried the way a foreign
 * client makes it (grpc-js's generic client, a method path, metadata).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../lib/rpc.ts';
import { tokenSha256 } from '../../daemon/access/principals.ts';
import type { Role } from '../../daemon/access/roles.ts';
import { issue, makePki, type CertFiles, type TestPki } from '../fixtures/certs.ts';

/** A PKI, a token and a client certificate per role, one certificate no principal names, and the auth file. */
export interface AccessFixture {
  pki: TestPki;
  tokens: Record<Role, string>;
  /** Client certificates signed by pki.ca, by the role their subject is given in the auth file. */
  certs: Record<Role, CertFiles>;
  /** Signed by pki.ca, named by no principal. */
  unknownCert: CertFiles;
  authFile: string;
}

export function accessFixture(dir: string): AccessFixture {
  const pki = makePki(dir);
  const tokens = { viewer: randomBytes(24).toString('base64url'), operator: randomBytes(24).toString('base64url'), admin: randomBytes(24).toString('base64url') };
  const certs = { viewer: pki.viewerCert, operator: issue(pki.ca, 'op-bot', { subject: '/CN=op-bot', use: 'client' }), admin: pki.ops };
  const unknownCert = issue(pki.ca, 'nobody', { subject: '/CN=nobody', use: 'client' });
  const authFile = join(dir, 'auth.json');
  writeFileSync(
    authFile,
    JSON.stringify({
      principals: [
        { name: 'dash', role: 'viewer', tokenSha256: tokenSha256(tokens.viewer) },
        { name: 'ci', role: 'operator', tokenSha256: tokenSha256(tokens.operator) },
        { name: 'root-token', role: 'admin', tokenSha256: tokenSha256(tokens.admin) },
        { name: 'ops-cert', role: 'admin', certSubject: 'CN=ops' },
        { name: 'viewer-cert', role: 'viewer', certSubject: 'CN=viewer-bot, O=Ferry Tests' },
        { name: 'op-cert', role: 'operator', certSubject: 'CN=op-bot' },
      ],
    }),
  );
  return { pki, tokens, certs, unknownCert, authFile };
}

/** Channel credentials trusting `ca`, presenting `client` if given. */
export function tlsCredentials(ca: string, client?: CertFiles): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(readFileSync(ca), client ? readFileSync(client.key) : null, client ? readFileSync(client.cert) : null);
}

/** How a raw call ended: its status code name and message. */
export interface CallEnd {
  code: string;
  message: string;
}

/**
 * Calls `service/method` with an empty request and `token` (if any) and
 * resolves with how it ended. A stream that the server accepts is cut by
 * its deadline (DEADLINE_EXCEEDED): a refusal comes before any handler runs.
 */
export function rawCall(client: grpc.Client, service: string, method: string, token?: string, deadlineMs = 2_000): Promise<CallEnd> {
  const def = serviceDefinition(service)[method]!;
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  const options = { deadline: Date.now() + deadlineMs };
  const ser = def.requestSerialize as (v: object) => Buffer;
  const de = def.responseDeserialize as (b: Buffer) => unknown;
  return new Promise((resolve) => {
    const end = (err: grpc.ServiceError | null) => resolve({ code: grpc.status[err?.code ?? grpc.status.OK]!, message: err?.details ?? '' });
    if (!def.requestStream && !def.responseStream) {
      client.makeUnaryRequest(def.path, ser, de, {}, metadata, options, (err) => end(err));
    } else if (def.requestStream && !def.responseStream) {
      const call = client.makeClientStreamRequest(def.path, ser, de, metadata, options, (err) => end(err));
      call.end();
    } else if (!def.requestStream) {
      const call = client.makeServerStreamRequest(def.path, ser, de, {}, metadata, options);
      call.on('data', () => call.cancel());
      call.on('error', (err: grpc.ServiceError) => end(err.code === grpc.status.CANCELLED ? null : err));
      call.on('end', () => end(null));
    } else {
      const call = client.makeBidiStreamRequest(def.path, ser, de, metadata, options);
      call.on('data', () => call.cancel());
      call.on('error', (err: grpc.ServiceError) => end(err.code === grpc.status.CANCELLED ? null : err));
      call.on('end', () => end(null));
      call.end();
    }
  });
}
