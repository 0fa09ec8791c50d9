/**
 * A client in another language works from the proto alone: Python stubs are
 * generated from proto/ferry/v1/migration.proto with Debian's
 * python3-grpc-tools, and test/interop/migrate.py runs a migration through
 * them against a real ferryd with the embedded simulator.
 *
 * Always /usr/bin/python3: the Debian packages (python3-grpcio,
 * python3-grpc-tools) live there, not in a pyenv or venv python that may come
 * first on PATH. Missing packages fail the test with the command that
 * installs them; they are never a silent skip.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, ROOT, runProcess, tempDir, testConfig, SMALL_ARRAY } from '../helpers.ts';

const PYTHON = '/usr/bin/python3';
const INSTALL_HINT = 'apt-get install python3-grpcio python3-grpc-tools';

const KiB = 1024;
const MiB = 1024 * KiB;



/** The folder that holds google/protobuf/timestamp.proto: grpc_tools ships it; a system copy also serves. */
async function wellKnownProtos(): Promise<string> {
  const probe = await runProcess(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf, grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))']);
  if (probe.code !== 0) {
    assert.fail(
      `${PYTHON} cannot import grpc and grpc_tools (${probe.spawnError?.message ?? probe.stderr.trim().split('\n').at(-1)}). ` +
        `This test needs Debian's gRPC Python packages: ${INSTALL_HINT}`,
    );
  }
  const candidates = [join(probe.stdout.trim(), '_proto'), '/usr/include', '/usr/share/protobuf', '/usr/local/include'];
  const found = candidates.find((dir) => existsSync(join(dir, 'google/protobuf/timestamp.proto')));
  if (!found) assert.fail(`google/protobuf/timestamp.proto is in none of ${candidates.join(', ')}; ${INSTALL_HINT}`);
  return found;
}

test('a Python client generated from the proto alone lists backends, is refused an early complete, and migrates a share to SUCCESS', async (t) => {
  const include = await wellKnownProtos();
  const dir = tempDir(t, 'ferry-interop-');
  const stubs = join(dir, 'stubs');
  mkdirSync(stubs);
  const protoc = await runProcess(PYTHON, ['-m', 'grpc_tools.protoc', '-I', join(ROOT, 'proto'), '-I', include, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, 'ferry/v1/migration.proto']);
  assert.equal(protoc.code, 0, `protoc failed: ${protoc.stderr}`);
  for (const file of ['migration_pb2.py', 'migration_pb2_grpc.py']) assert.ok(existsSync(join(stubs, 'ferry/v1', file)), `protoc wrote no ${file}`);

  const config = testConfig(join(dir, 'data'), { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }, pluginsDir(dir, ['simulator']));
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  for (const shareId of ['py1', 'py-slow']) {
    await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });
    await sim.call('WriteShare', { shareId, offset: 0, data: Buffer.alloc(256 * KiB, shareId) });
  }
  const before = (await sim.call('ChecksumShare', { shareId: 'py1' })).sha256 as string;

  const script = join(ROOT, 'test/interop/migrate.py');
  const r = await runProcess(PYTHON, [script, '--address', daemon.address, '--stubs', stubs, '--share', 'alpha/py1', '--slow-share', 'alpha/py-slow', '--destination', 'beta#bronze']);
  assert.equal(r.code, 0, `migrate.py exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  const out = r.stdout.trimEnd().split('\n');
  assert.equal(out.at(-1), 'PASS');
  assert.match(r.stdout, /^ok: ListBackends: alpha \(1 pools, simulator\), beta \(2 pools, simulator\)$/m);
  assert.match(r.stdout, /^ok: early CompleteMigration refused: FAILED_PRECONDITION \(trailer FAILED_PRECONDITION\): /m);
  assert.match(r.stdout, /^ok: WatchMigration: .*PHASE1_DONE, 1048576 bytes$/m);
  assert.match(r.stdout, /^ok: SUCCESS after .*MIGRATION_STATE_SUCCESS; cutover froze writes for [\d.]+ ms$/m);

  // What the Python client did is real: the share moved, unchanged, and the slow one stayed home.
  const moved = await sim.call('GetShare', { shareId: 'py1' });
  assert.equal(moved.backend, 'beta');
  assert.equal((await sim.call('ChecksumShare', { shareId: 'py1' })).sha256, before);
  assert.equal((await sim.call('GetShare', { shareId: 'py-slow' })).backend, 'alpha');
  const states = (await client.listMigrations()).migrations.map((m) => m.state);
  assert.deepEqual(states, ['MIGRATION_STATE_CANCELLED', 'MIGRATION_STATE_SUCCESS']);
});
