/**
 * How a client proves itself to ferryd and checks ferryd in return (issue
 * 14): TLS with the CA that signed ferryd's certificate, a client
 * certificate for mutual TLS, and a bearer token sent as
 * `authorization: Bearer <token>` metadata. FerryClient and the `ferry` CLI
 * share it: the CLI's --token, --cacert, --cert and --key are the options of
 * the same names.
 *
 * Everything is checked when the client is made (files readable, PEM that
 * parses, a certificate with its own key), so that a mistake is one clear
 * sentence naming the option and the file, before any call. The token is
 * never part of a message: it is a secret, and messages end up in logs.
 *
 * A failed TLS handshake reaches grpc-js's caller as an UNAVAILABLE whose
 * message wraps OpenSSL's reason in grpc-js's own words, a timestamp and at
 * times a source path; sometimes ferryd just closes the connection and there
 * is no reason at all. `explainConnectionFailure` turns those into a short
 * message that keeps OpenSSL's reason and adds what the client knows (its
 * certificate has expired), with the kind of trouble for the CLI's hint.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { isLoopback } from '../lib/address.ts';

/**
 * How FerryClient reaches ferryd beyond its address. TLS is used when any of
 * `cacert`, `cert` or `key` is given; else the channel is plaintext (as on
 * loopback), and a token still goes with every call.
 *
 * A string is a file's path, read once when the client is made; a Buffer is
 * the PEM text itself.
 */
export interface FerryClientOptions {
  /** A bearer token, sent with every call as `authorization: Bearer <token>` metadata. Printable ASCII, no spaces. */
  token?: string;
  /** The CA certificate(s), PEM, that signed ferryd's certificate; without it, Node's public roots. */
  cacert?: string | Buffer;
  /** This client's certificate (PEM) for mutual TLS; needs `key`. */
  cert?: string | Buffer;
  /** The unencrypted private key (PEM) of `cert`; needs `cert`. */
  key?: string | Buffer;
}

/** The options that take a file or PEM bytes. */
type PemOption = 'cacert' | 'cert' | 'key';

/**
 * A client option that cannot be used: an unreadable file, PEM that does not
 * parse, a certificate without its key, a bad token. Thrown by `new
 * FerryClient`, before any call; the CLI says it as a usage error, in the
 * names of its flags (`describe`).
 */
export class ClientOptionError extends Error {
  constructor(
    /** The option at fault, as FerryClientOptions names it (the CLI's flag is `--` and this). */
    readonly option: keyof FerryClientOptions,
    /** The file it names, when it names one. */
    readonly file: string | undefined,
    /** Why it cannot be used, e.g. "cannot be read: no such file or directory". */
    readonly why: string,
    /** The option that should have come with it (cert without key). */
    readonly missing?: keyof FerryClientOptions,
  ) {
    super('');
    this.name = 'ClientOptionError';
    this.message = this.describe((option) => option);
  }

  /** The message with each option named by `name` (the CLI: "--cacert"). */
  describe(name: (option: keyof FerryClientOptions) => string): string {
    const why = this.missing === undefined ? this.why : `is given without ${name(this.missing)}: ${this.why}`;
    return `${name(this.option)}${this.file === undefined ? '' : ` ${this.file}`}: ${why}`;
  }
}

/** The metadata key of the bearer token (RFC 6750's header, as gRPC carries it). */
export const AUTHORIZATION_METADATA = 'authorization';

/** What a client made from its options: the channel's credentials and the metadata of each call. */
export interface ClientSecurity {
  /** TLS credentials when any of cacert, cert or key was given, else insecure ones. */
  credentials: grpc.ChannelCredentials;
  /** Whether the channel uses TLS. */
  tls: boolean;
  /** The client certificate, parsed, when one was given (to say why ferryd may have refused it). */
  clientCert?: X509Certificate;
  /** Fresh metadata for one call: the token's, or empty. */
  metadata(): grpc.Metadata;
}

/** A file's path for messages, or undefined for PEM given as bytes. */
function fileOf(value: string | Buffer): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The short reason of a failed read: "no such file or directory", not Node's "ENOENT: no such file or directory, open '/x'". */
function readReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const known: Record<string, string> = { ENOENT: 'no such file or directory', EACCES: 'permission denied', EISDIR: 'it is a directory', ENOTDIR: 'a part of the path is not a directory' };
  return (e.code && known[e.code]) ?? e.message;
}

/** Reads a PEM option: the file's bytes, or the bytes given. */
function readPem(option: PemOption, value: string | Buffer): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value === '') throw new ClientOptionError(option, undefined, 'is empty: give the path of a PEM file');
  try {
    return readFileSync(value);
  } catch (err) {
    throw new ClientOptionError(option, value, `cannot be read: ${readReason(err)}`);
  }
}

/** The first certificate of a PEM option (a CA bundle, or a client certificate with its chain), parsed. */
function parseCertificate(option: 'cacert' | 'cert', pem: Buffer, file: string | undefined): X509Certificate {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ClientOptionError(option, file, 'holds no PEM certificate ("-----BEGIN CERTIFICATE-----")');
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new ClientOptionError(option, file, `holds a certificate that does not parse (${(err as Error).message})`);
  }
}

function parseKey(pem: Buffer, file: string | undefined): KeyObject {
  const text = pem.toString('latin1');
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new ClientOptionError('key', file, 'holds no PEM private key ("-----BEGIN ... PRIVATE KEY-----")');
  // PKCS#8's ENCRYPTED PRIVATE KEY, or the older Proc-Type header: nothing here could ask for the passphrase.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new ClientOptionError('key', file, 'is encrypted; ferry needs the key unencrypted (openssl pkey -in KEY -out PLAIN.key)');
  }
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new ClientOptionError('key', file, `holds a key that does not parse (${(err as Error).message})`);
  }
}

/**
 * Checks a token without ever showing it: gRPC metadata carries printable
 * ASCII, and a space or line end is a slip (a file read with its newline).
 */
function checkToken(token: string): void {
  if (token === '') throw new ClientOptionError('token', undefined, 'is empty');
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new ClientOptionError('token', undefined, 'holds a space, a line end or a character outside printable ASCII, which gRPC metadata cannot carry (the token is not shown)');
  }
}

/**
 * Checks the options for a client of `address` and makes the channel's
 * credentials and the per-call metadata. A token goes in clear text only to
 * a loopback address or a unix socket: to any other, without TLS, it is
 * refused here rather than sent for anyone on the path to read. Throws
 * ClientOptionError.
 */
export function clientSecurity(options: FerryClientOptions = {}, address = '127.0.0.1:0'): ClientSecurity {
  const { token, cacert, cert, key } = options;
  if (token !== undefined) checkToken(token);
  if (token !== undefined && cacert === undefined && cert === undefined && !isLoopback(address)) {
    throw new ClientOptionError('token', undefined, `it would travel in clear text to ${address}, which is not a loopback address (the token is not shown)`, 'cacert');
  }
  if ((cert === undefined) !== (key === undefined)) {
    const [given, missing] = cert !== undefined ? (['cert', 'key'] as const) : (['key', 'cert'] as const);
    throw new ClientOptionError(given, fileOf((cert ?? key)!), 'a client certificate needs its private key, and the key its certificate', missing);
  }
  const metadata = () => {
    const md = new grpc.Metadata();
    if (token !== undefined) md.set(AUTHORIZATION_METADATA, `Bearer ${token}`);
    return md;
  };
  if (cacert === undefined && cert === undefined) return { credentials: grpc.credentials.createInsecure(), tls: false, metadata };

  const ca = cacert === undefined ? null : readPem('cacert', cacert);
  if (ca && cacert !== undefined) parseCertificate('cacert', ca, fileOf(cacert));
  let certPem: Buffer | null = null;
  let keyPem: Buffer | null = null;
  let clientCert: X509Certificate | undefined;
  if (cert !== undefined && key !== undefined) {
    certPem = readPem('cert', cert);
    keyPem = readPem('key', key);
    clientCert = parseCertificate('cert', certPem, fileOf(cert));
    if (!clientCert.checkPrivateKey(parseKey(keyPem, fileOf(key)))) {
      throw new ClientOptionError('key', fileOf(key), `is not the private key of the certificate${fileOf(cert) === undefined ? '' : ` in ${fileOf(cert)}`} (${clientCert.subject.replace(/\n/g, ', ')})`);
    }
  }
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = grpc.credentials.createSsl(ca, keyPem, certPem);
  } catch (err) {
    // Checked above; what is left is OpenSSL refusing what Node parsed (a key type it will not use, say).
    throw new ClientOptionError(cert !== undefined ? 'cert' : 'cacert', fileOf((cert ?? cacert)!), `cannot be used for TLS (${(err as Error).message})`);
  }
  return { credentials, tls: true, ...(clientCert ? { clientCert } : {}), metadata };
}

/**
 * The kinds of connection trouble `explainConnectionFailure` tells apart;
 * each has its own hint in the CLI.
 */
export type ConnectionTrouble =
  /** ferryd's certificate was not accepted: signed by another CA than cacert's, or for another name. */
  | 'server-not-trusted'
  /** ferryd asked for a client certificate and none was given. */
  | 'client-cert-required'
  /** ferryd refused the client certificate (expired, or signed by a CA it does not trust). */
  | 'client-cert-refused'
  /** The client spoke TLS to a server that does not. */
  | 'server-not-tls'
  /** The client spoke plaintext and the server closed the connection: it may want TLS. */
  | 'server-may-want-tls'
  /** Another TLS failure, with OpenSSL's reason. */
  | 'tls';

/** OpenSSL's error string: "error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file:line:". */
const OPENSSL_ERROR = /error:[0-9A-F]{8}:[^:]*:[^:]*:([^:\n]+)/;

/** Node's words for a certificate it could not verify (X509_verify_cert_error_string, and checkServerIdentity's). */
const VERIFY_ERROR = /certificate|Hostname\/IP does not match|altnames/i;

/**
 * What grpc-js says when the connection was closed or reset before HTTP/2
 * began, with no TLS reason: a TLS server that refuses a client certificate
 * (or a plaintext client) just closes, with a FIN or a RST as it happens.
 */
const CLOSED_EARLY = /^(Failed to connect|Connection closed before starting HTTP\/2 handshake|read ECONNRESET|write ECONNRESET|write EPIPE)$/;

/** The client certificate as a refusal names it: its subject, and why it is not valid now if it is not ("CN=ops, which expired on ..."). */
function certFacts(cert: X509Certificate, now = Date.now()): string {
  const subject = cert.subject.replace(/\n/g, ', ');
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now > to.getTime()) return `${subject}, which expired on ${to.toISOString()}`;
  if (now < from.getTime()) return `${subject}, which is valid only from ${from.toISOString()}`;
  return subject;
}

/**
 * A connection failure (grpc-js's UNAVAILABLE message, "No connection
 * established. Last error: ...") said shortly, when TLS is involved:
 * OpenSSL's or Node's reason without grpc-js's wrapping, timestamp and
 * source paths, plus what the client knows. Undefined for failures that are
 * not about TLS (connection refused, no such host): those read well as they
 * are.
 */
export function explainConnectionFailure(message: string, security: Pick<ClientSecurity, 'tls' | 'clientCert'>): { message: string; trouble: ConnectionTrouble } | undefined {
  const last = /Last error: (?:Error: )?([\s\S]*)$/.exec(message)?.[1];
  if (last === undefined) return undefined;
  const text = last
    .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, '')
    .replace(/\.?\s*$/, '')
    .trim();
  const openssl = OPENSSL_ERROR.exec(text)?.[1]?.trim();
  if (openssl !== undefined) {
    if (/certificate required/.test(openssl)) return { message: `TLS handshake failed: ferryd asked for a client certificate and none was given (${openssl})`, trouble: 'client-cert-required' };
    if (/wrong version number|packet length too long|http request|record layer failure/.test(openssl)) {
      return { message: `TLS handshake failed: the server does not speak TLS there (${openssl})`, trouble: 'server-not-tls' };
    }
    if (/alert (bad|unknown|unsupported|certificate|decrypt|access denied)|unknown ca|certificate (expired|revoked|unknown)/.test(openssl) && security.clientCert) {
      return { message: `TLS handshake failed: ferryd did not accept the client certificate ${certFacts(security.clientCert)} (${openssl})`, trouble: 'client-cert-refused' };
    }
    return { message: `TLS handshake failed: ${openssl}`, trouble: 'tls' };
  }
  if (security.tls && VERIFY_ERROR.test(text)) return { message: `TLS handshake failed: ferryd's certificate was not accepted: ${text}`, trouble: 'server-not-trusted' };
  if (CLOSED_EARLY.test(text)) {
    if (security.clientCert) {
      return { message: `TLS handshake failed: ferryd closed the connection, refusing the client certificate ${certFacts(security.clientCert)}`, trouble: 'client-cert-refused' };
    }
    if (!security.tls) return { message: 'ferryd closed the connection before answering, as a TLS server does to a plaintext client', trouble: 'server-may-want-tls' };
    return { message: 'TLS handshake failed: ferryd closed the connection', trouble: 'tls' };
  }
  return undefined;
}
