/**
 * The client's security options checked before any call (client/security.ts):
 * real certificate and key files made with openssl (test/fixtures/certs.ts),
 * each wrong in one way, given to FerryClient and to the `ferry` CLI. A
 * mistake is a ClientOptionError naming the option and the file, and for the
 * CLI one line naming the flag, exit 2; a token is never part of a message.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ClientOptionError, FerryClient, type FerryClientOptions } from '../../client/client.ts';
import { run } from '../../client/cli.ts';
import { makePki } from '../fixtures/certs.ts';
import { tempDir } from '../helpers.ts';

/** What `new FerryClient` throws for these options (it must throw). */
function refused(options: FerryClientOptions): ClientOptionError {
  try {
    new FerryClient('127.0.0.1:1', 1_000, options).close();
  } catch (err) {
    assert.ok(err instanceof ClientOptionError, `expected a ClientOptionError, got ${String(err)}`);
    return err;
  }
  assert.fail(`new FerryClient(${JSON.stringify(options)}) did not throw`);
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** Runs the CLI in-process; nothing listens at its --server, so only a usage error can end it before a call would fail. */
async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await run(['--server', '127.0.0.1:1', '--timeout-ms', '2000', ...argv], { stdout, stderr, env, isTTY: false });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

test('FerryClient checks its options when it is made: each mistake names the option and the file', (t) => {
  const dir = tempDir(t);
  const pki = makePki(dir);
  // A key kept under a passphrase (as openssl makes one): ferry cannot prompt, and says so.
  const encryptedKey = join(dir, 'encrypted.key');
  writeFileSync(encryptedKey, execFileSync('openssl', ['pkey', '-in', pki.ops.key, '-aes256', '-passout', 'pass:secret']));

  const cases: { options: FerryClientOptions; option: string; file?: string; why: RegExp }[] = [
    { options: { cacert: join(dir, 'nope.pem') }, option: 'cacert', file: join(dir, 'nope.pem'), why: /^cannot be read: no such file or directory$/ },
    { options: { cacert: dir }, option: 'cacert', file: dir, why: /^cannot be read: it is a directory$/ },
    { options: { cacert: pki.ops.key }, option: 'cacert', file: pki.ops.key, why: /holds no PEM certificate/ },
    { options: { cacert: pki.ca.cert, cert: pki.ops.cert }, option: 'cert', file: pki.ops.cert, why: /^is given without key: a client certificate needs its private key/ },
    { options: { key: pki.ops.key }, option: 'key', file: pki.ops.key, why: /^is given without cert: / },
    { options: { cert: pki.ops.key, key: pki.ops.key }, option: 'cert', file: pki.ops.key, why: /holds no PEM certificate/ },
    { options: { cert: pki.ops.cert, key: pki.ops.cert }, option: 'key', file: pki.ops.cert, why: /holds no PEM private key/ },
    { options: { cert: pki.ops.cert, key: pki.viewerCert.key }, option: 'key', file: pki.viewerCert.key, why: new RegExp(`^is not the private key of the certificate in ${pki.ops.cert} \\(CN=ops\\)$`) },
    { options: { cert: pki.ops.cert, key: encryptedKey }, option: 'key', file: encryptedKey, why: /^is encrypted; ferry needs the key unencrypted/ },
    { options: { cacert: Buffer.from('not a certificate') }, option: 'cacert', why: /holds no PEM certificate/ },
    { options: { token: '' }, option: 'token', why: /^is empty$/ },
  ];
  for (const c of cases) {
    const err = refused(c.options);
    assert.equal(err.option, c.option, JSON.stringify(c.options));
    assert.equal(err.file, c.file, JSON.stringify(c.options));
    const prefix = `${c.option}${c.file === undefined ? '' : ` ${c.file}`}: `;
    assert.ok(err.message.startsWith(prefix), `"${err.message}" does not start with "${prefix}"`);
    assert.match(err.message.slice(prefix.length), c.why, err.message);
  }

  // A token gRPC metadata cannot carry (a file read with its newline) is refused without being shown.
  const secret = randomBytes(16).toString('hex');
  for (const token of [`${secret}\n`, `${secret} x`, `${secret}\u00e9`]) {
    const err = refused({ token });
    assert.equal(err.option, 'token');
    assert.doesNotMatch(err.message, new RegExp(secret), 'the token is in the message');
    assert.match(err.message, /the token is not shown/);
  }

  // PEM given as bytes works as the file does; TLS with a client certificate, or a token alone (plaintext).
  new FerryClient('127.0.0.1:1', 1_000, { cacert: readFileSync(pki.ca.cert), cert: readFileSync(pki.ops.cert), key: readFileSync(pki.ops.key), token: secret }).close();
  new FerryClient('127.0.0.1:1', 1_000, { token: secret }).close();
  new FerryClient('unix:/run/ferry.sock', 1_000, { token: secret }).close();

  // A token alone to an address other machines can reach would go in clear text: refused, the token not shown.
  for (const address of ['10.0.0.5:50051', 'ferry.example:50051', '[::]:50051']) {
    assert.throws(() => new FerryClient(address, 1_000, { token: secret }), (e: Error) => e instanceof ClientOptionError && e.message === `token: is given without cacert: it would travel in clear text to ${address}, which is not a loopback address (the token is not shown)`);
  }
  new FerryClient('10.0.0.5:50051', 1_000, { token: secret, cacert: pki.ca.cert }).close();
});

test('ferry: a security flag that cannot be used is one line naming the flag and the file, exit 2; the token shows nowhere', async (t) => {
  const dir = tempDir(t);
  const pki = makePki(dir);
  const missing = join(dir, 'missing.pem');
  const lines: [string[], RegExp][] = [
    [['--cacert', missing, 'list'], new RegExp(`^ferry: --cacert ${missing}: cannot be read: no such file or directory\\n$`)],
    [['--cert', pki.ops.cert, 'list'], new RegExp(`^ferry: --cert ${pki.ops.cert}: is given without --key: `)],
    [['--key', pki.ops.key, 'list'], new RegExp(`^ferry: --key ${pki.ops.key}: is given without --cert: `)],
    [['--cacert', pki.ca.cert, '--cert', pki.ops.cert, '--key', pki.stranger.key, 'start', 'alpha/s', 'beta#bronze'], new RegExp(`^ferry: --key ${pki.stranger.key}: is not the private key of the certificate in ${pki.ops.cert} \\(CN=ops\\)\\n$`)],
    [['--token', '', 'list'], /^ferry: --token: is empty\n$/],
    [['--server', '192.0.2.2:50051', '--token', 'abc', 'list'], /^ferry: --token: is given without --cacert: it would travel in clear text to 192\.0\.2\.2:50051, which is not a loopback address \(the token is not shown\)\n$/],
  ];
  for (const [argv, stderr] of lines) {
    const r = await cli(argv);
    assert.equal(r.code, 2, `ferry ${argv.join(' ')}: exit ${r.code}, stderr: ${r.stderr}`);
    assert.match(r.stderr, stderr);
    assert.equal(r.stdout, '');
  }

  const secret = randomBytes(16).toString('hex');
  const fromEnv = await cli(['list'], { FERRY_TOKEN: `${secret}\n` });
  assert.equal(fromEnv.code, 2);
  assert.match(fromEnv.stderr, /^ferry: FERRY_TOKEN: holds a space, a line end or a character outside printable ASCII, .*\(the token is not shown\)\n$/);
  assert.doesNotMatch(fromEnv.stderr, new RegExp(secret));

  // The help documents the flags and FERRY_TOKEN, and never prints the token it was given as a default.
  const help = await cli(['--help'], { FERRY_TOKEN: secret });
  assert.equal(help.code, 0);
  for (const flag of ['--token <token>', '--cacert <file>', '--cert <file>', '--key <file>', 'FERRY_TOKEN', 'arguments show in ps']) assert.ok(help.stdout.includes(flag), `--help lacks ${flag}`);
  assert.doesNotMatch(help.stdout + help.stderr, new RegExp(secret));
});
