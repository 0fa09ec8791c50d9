/**
 * The principals of `--auth FILE`: who may call ferryd, known by a bearer
 * token or by a client certificate's subject, and with which role.
 *
 *   {"principals": [
 *     {"name": "ci", "role": "operator", "tokenSha256": "<64 hex digits>"},
 *     {"name": "ops-cert", "role": "admin", "certSubject": "CN=ops"}]}
 *
 * The file holds only each token's SHA-256, so it can be read by whoever
 * deploys ferryd without handing out the tokens. A subject is a set of
 * attribute=value pairs ("CN=ops" or "O=Acme, CN=ops", in any order, "/"
 * or "," between them as openssl and RFC 4514 write them); it matches a
 * certificate whose subject has exactly those attributes. Every problem is
 * one line naming the file, the entry and the field.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ROLES, type Role } from './roles.ts';

/** A known caller. */
export interface Principal {
  name: string;
  role: Role;
}

/** Thrown for an auth file that cannot be used; the message is one line. */
export class AuthFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthFileError';
  }
}

/** A subject as a canonical key: attribute types upper-cased, pairs sorted. */
export function subjectKey(pairs: Iterable<[string, string]>): string {
  return [...pairs]
    .map(([type, value]) => `${type.trim().toUpperCase()}=${value.trim()}`)
    .sort()
    .join('\n');
}

/** Parses "CN=ops", "O=Acme, CN=ops" or "/O=Acme/CN=ops" into pairs; null when a part has no "=". */
export function parseSubject(text: string): [string, string][] | null {
  const parts = text.split(/[,/\n]/).map((p) => p.trim()).filter((p) => p.length > 0);
  const pairs: [string, string][] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) return null;
    pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  return pairs.length > 0 ? pairs : null;
}

/** A certificate subject as Node gives it (tls.PeerCertificate.subject): values may repeat (arrays). */
export function certificateSubjectKey(subject: Record<string, string | string[]>): string {
  const pairs: [string, string][] = [];
  for (const [type, value] of Object.entries(subject)) for (const v of Array.isArray(value) ? value : [value]) pairs.push([type, v]);
  return subjectKey(pairs);
}

/** The SHA-256 of a token, hex: what the auth file keeps. */
export function tokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The principals of one auth file. */
export class Principals {
  private constructor(
    private readonly byTokenHash: ReadonlyMap<string, Principal>,
    private readonly bySubject: ReadonlyMap<string, Principal>,
    /** Principals known by certificate: they need --tls-client-ca. */
    readonly certificatePrincipals: readonly string[],
    readonly size: number,
  ) {}

  /** The principal a bearer token names, if any. */
  byToken(token: string): Principal | undefined {
    return this.byTokenHash.get(tokenSha256(token));
  }

  /** The principal a client certificate's subject names, if any. */
  byCertificate(subject: Record<string, string | string[]>): Principal | undefined {
    return this.bySubject.get(certificateSubjectKey(subject));
  }

  /** Reads and checks `path`. Throws AuthFileError. */
  static load(path: string): Principals {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new AuthFileError(`auth file ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new AuthFileError(`auth file ${path} is not JSON: ${(err as Error).message}`);
    }
    return Principals.parse(doc, `auth file ${path}`);
  }

  /** Checks a parsed auth file; `source` names it in messages. */
  static parse(doc: unknown, source: string): Principals {
    const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObject(doc) || !Array.isArray(doc.principals)) throw new AuthFileError(`${source}: the top level must be {"principals": [...]}`);
    for (const key of Object.keys(doc)) if (key !== 'principals') throw new AuthFileError(`${source}: ${key} is not a setting (known: principals)`);
    const names = new Set<string>();
    const byTokenHash = new Map<string, Principal>();
    const bySubject = new Map<string, Principal>();
    const certificatePrincipals: string[] = [];
    doc.principals.forEach((entry: unknown, i: number) => {
      const at = `${source}: principals[${i}]`;
      if (!isObject(entry)) throw new AuthFileError(`${at} must be an object`);
      for (const key of Object.keys(entry)) {
        if (!['name', 'role', 'tokenSha256', 'certSubject'].includes(key)) throw new AuthFileError(`${at}.${key} is not a field (known: name, role, tokenSha256, certSubject)`);
      }
      const { name, role, tokenSha256: hash, certSubject } = entry;
      if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new AuthFileError(`${at}.name must be 1-64 letters, digits, ".", "_", "@" or "-"`);
      if (names.has(name)) throw new AuthFileError(`${at}.name ${name} is used twice`);
      names.add(name);
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw new AuthFileError(`${at}.role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
      const principal: Principal = { name, role: role as Role };
      if ((hash === undefined) === (certSubject === undefined)) throw new AuthFileError(`${at} (${name}) needs exactly one of tokenSha256 and certSubject`);
      if (hash !== undefined) {
        if (typeof hash !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hash)) throw new AuthFileError(`${at}.tokenSha256 must be 64 hex digits (the SHA-256 of the token, e.g. from: printf %s "$TOKEN" | sha256sum)`);
        const key = hash.toLowerCase();
        if (byTokenHash.has(key)) throw new AuthFileError(`${at}.tokenSha256 is also ${byTokenHash.get(key)!.name}'s: each token names one principal`);
        byTokenHash.set(key, principal);
      } else {
        const pairs = typeof certSubject === 'string' ? parseSubject(certSubject) : null;
        if (!pairs) throw new AuthFileError(`${at}.certSubject must be attribute=value pairs such as "CN=ops" or "O=Acme, CN=ops", got ${JSON.stringify(certSubject)}`);
        const key = subjectKey(pairs);
        if (bySubject.has(key)) throw new AuthFileError(`${at}.certSubject is also ${bySubject.get(key)!.name}'s: each subject names one principal`);
        bySubject.set(key, principal);
        certificatePrincipals.push(name);
      }
    });
    return new Principals(byTokenHash, bySubject, certificatePrincipals, names.size);
  }
}
