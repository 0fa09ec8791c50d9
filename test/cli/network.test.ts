/**
 * The `ferry` command on a network (issue 14): bin/ferry.mjs run as a real
 * child process against a real ferryd child process started with
 * --tls-cert, --tls-key, --auth (and --tls-client-ca for mutual TLS), with
 * certificates made by openssl (test/fixtures/certs.ts) and tokens made
 * fresh for each test. Each refusal is checked as a user sees it: one line
 * on stderr, the exit code, and never the token.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { FerryClient } from '../../client/client.ts';
import { array, arrayBackends, backendOf, makeShares } from '../fixtures/network-array.ts';
import { accessFixture, type AccessFixture } from '../daemon/access-helpers.ts';
import { pluginsDir, ROOT, runProcess, spawnDaemon, type ChildDaemon, type Run } from '../helpers.ts';
import { defer, tempDir } from '../simulator/helpers.ts';

/** Runs bin/ferry.mjs with `args` and exactly `env` added (no FERRY_TOKEN from this process's). */
function ferry(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runProcess(process.execPath, [join(ROOT, 'bin/ferry.mjs'), ...args], { FERRY_TOKEN: undefined, FERRY_SERVER: undefined, ...env });
}

/** Asserts the exit code and that stderr is the one line `line` matches. */
function says(r: Run, code: number, line: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, `${what}: stderr is not one line:\n${r.stderr}`);
  assert.match(r.stderr, line, what);
}

/** A ferryd child process over a served array, with the given network flags; stopped when the test ends. */
async function networkDaemon(t: TestContext, networkFlags: (auth: AccessFixture) => string[]) {
  const dir = await tempDir(t);
  const auth = accessFixture(dir);
  const { pki } = auth;
  const arrayed = await array(t);
  const config = join(dir, 'ferryd.json');
  writeFileSync(config, JSON.stringify(arrayBackends(arrayed.address)));
  const daemon: ChildDaemon = await spawnDaemon([
    '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--config', config, '--plugins-dir', pluginsDir(dir, ['simulator']), '--log-level', 'info',
    ...networkFlags(auth),
  ]);
  defer(t, async () => {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGTERM');
    await daemon.exited;
  });
  return { pki, auth, arrayed, daemon, server: daemon.address };
}

/** No run printed a token. */
function noTokenShown(runs: Run[], tokens: string[]): void {
  for (const r of runs) for (const token of tokens) assert.ok(!(r.stdout + r.stderr).includes(token), `a token was printed:\n${r.stdout}${r.stderr}`);
}

test('ferry over TLS with --cacert and a token: a whole migration; refused without a token, with an unknown one, and a viewer refused a start', async (t) => {
  const { pki, auth, arrayed, server } = await networkDaemon(t, ({ pki, authFile }) => ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--auth', authFile]);
  await makeShares(arrayed, 'tls1', 'tls2');
  const tls = ['--server', server, '--cacert', pki.ca.cert];
  const unknown = randomBytes(24).toString('base64url');

  const [migrate, viewerList, noToken, unknownToken, viewerStart] = await Promise.all([
    ferry([...tls, 'migrate', 'alpha/tls1', 'beta#bronze', '--writable'], { FERRY_TOKEN: auth.tokens.operator }),
    ferry([...tls, '--token', auth.tokens.viewer, '--json', 'list']),
    ferry([...tls, 'list']),
    ferry([...tls, 'backends'], { FERRY_TOKEN: unknown }),
    ferry([...tls, 'start', 'alpha/tls2', 'beta#bronze'], { FERRY_TOKEN: auth.tokens.viewer }),
  ]);

  // The operator's token went with every call: the start, the watch (a stream), the complete.
  assert.equal(migrate.code, 0, migrate.stderr);
  assert.match(migrate.stdout.trimEnd().split('\n').at(-1)!, /^SUCCESS\s+100\.0%/);
  assert.equal(migrate.stderr, '', 'a successful run over TLS wrote to stderr (a DEP0123 warning?)');
  assert.equal(await backendOf(arrayed, 'tls1'), 'beta');

  assert.equal(viewerList.code, 0, viewerList.stderr);
  assert.ok(Array.isArray((JSON.parse(viewerList.stdout) as { migrations: unknown[] }).migrations));

  says(noToken, 3, /^ferry: UNAUTHENTICATED: .+ \(set --token or FERRY_TOKEN, or give a client certificate with --cert and --key\)$/m, 'no token');
  says(unknownToken, 3, /^ferry: UNAUTHENTICATED: .*not known.* \(check --token or FERRY_TOKEN\)$/m, 'unknown token');
  says(viewerStart, 3, /^ferry: PERMISSION_DENIED: .*StartMigration needs role operator; dash has role viewer \(use a token or certificate whose principal has that role\)$/m, 'viewer start');

  // Nothing was started for the viewer.
  const admin = new FerryClient(server, 10_000, { cacert: pki.ca.cert, token: auth.tokens.operator });
  t.after(() => admin.close());
  assert.deepEqual((await admin.listMigrations()).migrations.map((m) => m.share.shareId), ['tls1']);
  assert.equal(await backendOf(arrayed, 'tls2'), 'alpha');
  noTokenShown([migrate, viewerList, noToken, unknownToken, viewerStart], [auth.tokens.operator, auth.tokens.viewer, unknown]);
});

test('ferry and a TLS ferryd that cannot agree: another CA, plaintext to TLS, TLS to plaintext: one readable line each, exit 4', async (t) => {
  const { pki, auth, server } = await networkDaemon(t, ({ pki, authFile }) => ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--auth', authFile]);
  const plain = await networkDaemon(t, () => []);
  const env = { FERRY_TOKEN: auth.tokens.operator };
  const [wrongCa, plaintext, tlsToPlain] = await Promise.all([
    ferry(['--server', server, '--cacert', pki.otherCa.cert, 'list'], env),
    ferry(['--server', server, 'list'], env),
    ferry(['--server', plain.server, '--cacert', plain.pki.ca.cert, 'list'], env),
  ]);
  const at = (address: string) => `^ferry: UNAVAILABLE: cannot connect to ferryd at ${address.replace(/\./g, '\\.')}: `;
  says(wrongCa, 4, new RegExp(`${at(server)}TLS handshake failed: ferryd's certificate was not accepted: (unable to verify the first certificate|self-signed certificate in certificate chain) \\(is --cacert the CA that signed ferryd's certificate`), 'wrong CA');
  says(plaintext, 4, new RegExp(`${at(server)}ferryd closed the connection before answering, as a TLS server does to a plaintext client \\(if ferryd serves TLS, give --cacert\\)$`, 'm'), 'plaintext to TLS');
  says(tlsToPlain, 4, new RegExp(`${at(plain.server)}TLS handshake failed: the server does not speak TLS there \\(wrong version number\\) \\(is ferryd started with --tls-cert\\?`), 'TLS to plaintext');
  for (const r of [wrongCa, plaintext, tlsToPlain]) assert.doesNotMatch(r.stderr, /\n\s+at |deps\/openssl|\d{4}-\d\d-\d\dT/, 'a stack, a source path or grpc-js\'s timestamp');
  noTokenShown([wrongCa, plaintext, tlsToPlain], [auth.tokens.operator]);
});

test('ferry over mutual TLS with --cert and --key: a whole migration as CN=ops; the viewer-bot refused a start, a certificate no principal names refused; an expired, a foreign and a missing certificate refused at the handshake', async (t) => {
  const { pki, auth, arrayed, server } = await networkDaemon(t, ({ pki, authFile }) => ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-client-ca', pki.ca.cert, '--auth', authFile]);
  await makeShares(arrayed, 'm1', 'm2');
  const base = ['--server', server, '--cacert', pki.ca.cert];
  const as = (files: { cert: string; key: string }) => [...base, '--cert', files.cert, '--key', files.key];

  const [migrate, viewerStart, nobody, expired, stranger, none] = await Promise.all([
    ferry([...as(pki.ops), 'migrate', 'alpha/m1', 'beta#bronze', '--writable']),
    ferry([...as(pki.viewerCert), 'start', 'alpha/m2', 'beta#bronze']),
    ferry([...as(auth.unknownCert), 'list']),
    ferry([...as(pki.expired), 'list']),
    ferry([...as(pki.stranger), 'list']),
    ferry([...base, 'list'], { FERRY_TOKEN: auth.tokens.operator }),
  ]);

  assert.equal(migrate.code, 0, migrate.stderr);
  assert.match(migrate.stdout.trimEnd().split('\n').at(-1)!, /^SUCCESS\s+100\.0%/);
  assert.equal(migrate.stderr, '');
  assert.equal(await backendOf(arrayed, 'm1'), 'beta');

  says(viewerStart, 3, /^ferry: PERMISSION_DENIED: .*StartMigration needs role operator; viewer-cert has role viewer \(use a token or certificate whose principal has that role\)$/m, 'viewer-bot start');
  says(nobody, 3, /^ferry: UNAUTHENTICATED: .*"CN=nobody".* \(use a certificate whose subject is a principal in ferryd's --auth file, or a token\)$/m, 'a certificate no principal names');
  const at = `^ferry: UNAVAILABLE: cannot connect to ferryd at ${server.replace(/\./g, '\\.')}: TLS handshake failed: `;
  says(expired, 4, new RegExp(`${at}ferryd closed the connection, refusing the client certificate CN=ops, which expired on \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(give --cert and --key of a certificate valid now`), 'expired certificate');
  says(stranger, 4, new RegExp(`${at}ferryd closed the connection, refusing the client certificate CN=ops \\(give --cert and --key of a certificate valid now and signed by the CA of ferryd's --tls-client-ca\\)$`, 'm'), 'foreign certificate');
  says(none, 4, new RegExp(`${at}ferryd asked for a client certificate and none was given \\(tlsv13 alert certificate required\\) \\(ferryd wants mutual TLS: give --cert and --key\\)$`, 'm'), 'no certificate');
  assert.equal(await backendOf(arrayed, 'm2'), 'alpha');
  noTokenShown([none], [auth.tokens.operator]);
});
