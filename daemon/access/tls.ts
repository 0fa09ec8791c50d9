/**
 * ferryd's TLS: server credentials from PEM files (`--tls-cert`,
 * `--tls-key`, and `--tls-client-ca` to require client certificates signed
 * by that CA), re-read when the files change, so certificates rotate
 * without a restart.
 *
 * The files are served through grpc-js's certificate-provider credentials
 * (the hook it offers for rotation): every new set is checked first (each
 * file read, the key matching the certificate, the CA parsing), and a set
 * that does not check out, such as a rotation caught between writing the
 * certificate and its key, is logged and the previous one kept. Connections
 * already open keep the certificate they were made with.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Log } from '../../lib/log.ts';
import { watchFiles } from './watch-files.ts';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/** The TLS files, as absolute paths. */
export interface TlsFiles {
  cert: string;
  key: string;
  /** Clients must present a certificate signed by this CA. */
  clientCa?: string;
}

/** Thrown when the TLS files cannot be used at start; the message is one line naming the file. */
export class TlsFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsFileError';
  }
}

/** One checked set of files. */
interface TlsSet {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  subject: string;
  notAfter: string;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFileError(`${what} ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Reads and checks the files. Throws TlsFileError. */
export function readTlsFiles(files: TlsFiles): TlsSet {
  const cert = readPem(files.cert, 'TLS certificate');
  const key = readPem(files.key, 'TLS key');
  const ca = files.clientCa === undefined ? undefined : readPem(files.clientCa, 'TLS client CA');
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(cert);
  } catch (err) {
    throw new TlsFileError(`TLS certificate ${files.cert} is not a PEM certificate: ${(err as Error).message}`);
  }
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new TlsFileError(`TLS client CA ${files.clientCa} is not a PEM certificate: ${(err as Error).message}`);
    }
  }
  try {
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (err) {
    const why = (err as Error).message;
    const pair = /key values mismatch/i.test(why) ? 'is not the key of' : 'cannot be used with';
    throw new TlsFileError(`TLS key ${files.key} ${pair} certificate ${files.cert} (${why})`);
  }
  return { cert, key, ca, subject: parsed.subject.replace(/\n/g, ', '), notAfter: parsed.validTo };
}

/** How often the files are checked for a change. */
export const TLS_RELOAD_MS = 1_000;

/**
 * Server TLS that follows its files. Emits 'reload' with the new subject
 * after a new set is in use, and 'reloadFailed' with the error when a
 * changed set could not be used.
 */
export class ServerTls extends EventEmitter implements CertificateProvider {
  /** The credentials to bind with. */
  readonly credentials: grpc.ServerCredentials;
  private current: TlsSet;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly unwatch: () => void;

  /** Reads the files (throws TlsFileError) and watches them. */
  constructor(
    readonly files: TlsFiles,
    private readonly log: Log,
    reloadMs = TLS_RELOAD_MS,
  ) {
    super();
    this.current = readTlsFiles(files);
    this.warnIfExpired(this.current);
    const requireClientCertificate = files.clientCa !== undefined;
    this.credentials = grpc.experimental.createCertificateProviderServerCredentials(this, requireClientCertificate ? this : null, requireClientCertificate);
    const paths = [files.cert, files.key, ...(files.clientCa ? [files.clientCa] : [])];
    this.unwatch = watchFiles(paths, reloadMs, (path) => this.reload(path));
    log.info({ certificate: files.cert, subject: this.current.subject, notAfter: this.current.notAfter, clientCa: files.clientCa ?? null }, 'TLS on');
  }

  /** Stops watching the files. */
  close(): void {
    this.unwatch();
  }

  private warnIfExpired(set: TlsSet): void {
    if (Date.parse(set.notAfter) < Date.now()) this.log.warn({ certificate: this.files.cert, notAfter: set.notAfter }, 'the TLS certificate has expired; clients will refuse it');
  }

  private reload(changed: string): void {
    let next: TlsSet;
    try {
      next = readTlsFiles(this.files);
    } catch (err) {
      this.log.warn({ changed, reason: (err as Error).message }, 'TLS files changed but cannot be used; still serving the previous certificate');
      this.emit('reloadFailed', err);
      return;
    }
    const same = (a: Buffer | undefined, b: Buffer | undefined) => (a === undefined || b === undefined ? a === b : a.equals(b));
    if (same(next.cert, this.current.cert) && same(next.key, this.current.key) && same(next.ca, this.current.ca)) return;
    this.current = next;
    this.warnIfExpired(next);
    for (const listener of this.identityListeners) listener({ certificate: next.cert, privateKey: next.key });
    if (next.ca) for (const listener of this.caListeners) listener({ caCertificate: next.ca });
    this.log.info({ changed, subject: next.subject, notAfter: next.notAfter }, 'TLS certificate reloaded');
    this.emit('reload', next.subject);
  }

  // CertificateProvider, as grpc-js calls it: a listener hears the current value, then every change. The current value is
  // told on the next microtask, not at once: grpc-js adds these listeners before the server's own watcher, which misses
  // anything told synchronously and would then drop every connection for want of credentials.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.caListeners.has(listener) && this.current.ca) listener({ caCertificate: this.current.ca });
    });
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) listener({ certificate: this.current.cert, privateKey: this.current.key });
    });
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
