/**
 * The Python client on a network (issue 14): test/interop/migrate.py, with
 * stubs generated from the proto alone, migrates a share to SUCCESS through
 * a ferryd that serves TLS and knows its callers, once with --cacert and a
 * token from FERRY_TOKEN, once over mutual TLS with --cert and --key; and
 * without a credential it is refused. ferryd runs in this process with the
 * config file's `tls` and `auth`; the certificates are openssl's
 * (test/fixtures/certs.ts), the tokens made fresh.
 *
 * Always /usr/bin/python3 with Debian's python3-grpcio and
 * python3-grpc-tools, as in python.test.ts; missing packages fail the test
 * with the command that installs them.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { FerryClient } from '../../client/client.ts';
import { startDaemon } from '../../daemon/daemon.ts';
import { silentLog } from '../../lib/log.ts';
import { array, arrayBackends, backendOf, makeShares } from '../fixtures/network-array.ts';
import { accessFixture, type AccessFixture } from '../daemon/access-helpers.ts';
import { pluginsDir, ROOT, runProcess, testConfig } from '../helpers.ts';
import { defer, tempDir } from '../simulator/helpers.ts';
import { PYTHON, pythonSetup } from './reflect-client.ts';

/** Generates the Python stubs of migration.proto into `dir/stubs`. */
async function stubs(dir: string): Promise<string> {
  const { wellKnownProtos } = await pythonSetup();
  const out = join(dir, 'stubs');
  mkdirSync(out);
  const protoc = await runProcess(PYTHON, ['-m', 'grpc_tools.protoc', '-I', join(ROOT, 'proto'), '-I', wellKnownProtos, `--python_out=${out}`, `--grpc_python_out=${out}`, 'ferry/v1/migration.proto']);
  assert.equal(protoc.code, 0, `protoc failed: ${protoc.stderr}`);
  assert.ok(existsSync(join(out, 'ferry/v1/migration_pb2_grpc.py')), 'protoc wrote no migration_pb2_grpc.py');
  return out;
}

/** ferryd in this process with `network` in its config file, over a served array holding `shares`; and a run of migrate.py against it. */
async function setup(t: TestContext, network: (auth: AccessFixture) => Record<string, unknown>, ...shares: string[]) {
  const dir = await tempDir(t);
  const auth = accessFixture(dir);
  const { pki } = auth;
  const arrayed = await array(t);
  await makeShares(arrayed, ...shares);
  const daemon = await startDaemon(testConfig(join(dir, 'data'), { ...arrayBackends(arrayed.address), ...network(auth) }, pluginsDir(dir, ['simulator'])), silentLog());
  defer(t, () => daemon.close(1_000));
  const stubsDir = await stubs(dir);
  const migratePy = (share: string, slowShare: string, flags: string[], env: Record<string, string | undefined> = {}) =>
    runProcess(PYTHON, [join(ROOT, 'test/interop/migrate.py'), '--address', daemon.address, '--stubs', stubsDir, '--share', share, '--slow-share', slowShare, '--destination', 'beta#bronze', ...flags], { FERRY_TOKEN: undefined, ...env });
  return { pki, auth, arrayed, address: daemon.address, migratePy };
}

function passed(r: { code: number | null; stdout: string; stderr: string }): void {
  assert.equal(r.code, 0, `migrate.py exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.equal(r.stdout.trimEnd().split('\n').at(-1), 'PASS');
  assert.match(r.stdout, /^ok: WatchMigration: .*PHASE1_DONE, 1048576 bytes$/m);
  assert.match(r.stdout, /^ok: SUCCESS after .*MIGRATION_STATE_SUCCESS; /m);
}

test('the Python client migrates a share to SUCCESS over TLS with a token from FERRY_TOKEN, and without one is refused UNAUTHENTICATED', async (t) => {
  const { pki, auth, arrayed, address, migratePy } = await setup(t, ({ pki, authFile }) => ({ tls: { cert: pki.server.cert, key: pki.server.key }, auth: authFile }), 'py1', 'py-slow', 'py2');

  passed(await migratePy('alpha/py1', 'alpha/py-slow', ['--cacert', pki.ca.cert], { FERRY_TOKEN: auth.tokens.operator }));
  assert.equal(await backendOf(arrayed, 'py1'), 'beta');
  assert.equal(await backendOf(arrayed, 'py-slow'), 'alpha');

  const refused = await migratePy('alpha/py2', 'alpha/py-slow', ['--cacert', pki.ca.cert]);
  assert.equal(refused.code, 1, `stdout:\n${refused.stdout}\nstderr:\n${refused.stderr}`);
  assert.match(refused.stderr, /^error: UNAUTHENTICATED: ferry\.v1\.MigrationService\/ListBackends needs a credential/m);

  // What ferryd holds: the one migration, made by the client with the token (its cancelled slow start too).
  const admin = new FerryClient(address, 10_000, { cacert: pki.ca.cert, token: auth.tokens.operator });
  t.after(() => admin.close());
  assert.deepEqual((await admin.listMigrations()).migrations.map((m) => [m.share.shareId, m.state]), [['py-slow', 'MIGRATION_STATE_CANCELLED'], ['py1', 'MIGRATION_STATE_SUCCESS']]);
});

test('the Python client migrates a share to SUCCESS over mutual TLS with --cert and --key', async (t) => {
  const { pki, arrayed, migratePy } = await setup(t, ({ pki, authFile }) => ({ tls: { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert }, auth: authFile }), 'm1', 'm-slow');
  passed(await migratePy('alpha/m1', 'alpha/m-slow', ['--cacert', pki.ca.cert, '--cert', pki.ops.cert, '--key', pki.ops.key]));
  assert.equal(await backendOf(arrayed, 'm1'), 'beta');
});
