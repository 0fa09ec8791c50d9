/**
 * Drives test/interop/reflect.py, the grpcurl-like client that knows no Ferry
 * proto, and starts the real processes it talks to (ferryd, ferry-sim) as
 * child processes, the way a user's own tool meets them.
 *
 * Always /usr/bin/python3 with Debian's python3-grpcio, python3-grpc-tools and
 * grpc-proto; anything missing fails the test with the command that installs
 * it, never a silent skip.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, runProcess, SMALL_ARRAY, spawnDaemon, type ChildDaemon, type Run } from '../helpers.ts';
import { defer } from '../simulator/helpers.ts';

/** Debian's python, where the Debian packages live (not a pyenv or venv python first on PATH). */
export const PYTHON = '/usr/bin/python3';
/** Debian's grpc-proto: health.proto and both reflection.protos. */
export const GRPC_PROTO = '/usr/share/grpc-proto';
const INSTALL_HINT = 'apt-get install python3-grpcio python3-grpc-tools grpc-proto';

/**
 * Checks the Python side once and returns grpc_tools' bundled protos folder
 * (google/protobuf/*.proto), which protoc needs beside proto/ and grpc-proto.
 */
export async function pythonSetup(): Promise<{ wellKnownProtos: string }> {
  const probe = await runProcess(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf, grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))']);
  if (probe.code !== 0) {
    assert.fail(`${PYTHON} cannot import grpc and grpc_tools (${probe.spawnError?.message ?? probe.stderr.trim().split('\n').at(-1)}); ${INSTALL_HINT}`);
  }
  const wellKnownProtos = join(probe.stdout.trim(), '_proto');
  if (!existsSync(join(wellKnownProtos, 'google/protobuf/timestamp.proto'))) assert.fail(`grpc_tools ships no google/protobuf/timestamp.proto under ${wellKnownProtos}; ${INSTALL_HINT}`);
  if (!existsSync(join(GRPC_PROTO, 'grpc/reflection/v1/reflection.proto'))) assert.fail(`${GRPC_PROTO}/grpc/reflection/v1/reflection.proto is missing; ${INSTALL_HINT}`);
  return { wellKnownProtos };
}

/** Runs reflect.py against `address`: `reflect(addr, 'list')`, `reflect(addr, 'call', 'svc/M', '-d', json)`. */
export function reflect(address: string, ...args: string[]): Promise<Run> {
  return runProcess(PYTHON, [join(ROOT, 'test/interop/reflect.py'), address, ...args]);
}

/** Like `reflect`, but the run must exit 0; the assertion shows everything it printed. */
export async function reflectOk(address: string, ...args: string[]): Promise<Run> {
  const r = await reflect(address, ...args);
  assert.equal(r.code, 0, `reflect.py ${args.join(' ')} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r;
}

/** The JSON messages a `call` printed, one per line. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function messages(run: Run): any[] {
  return run.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown);
}

/** The "ERROR:" block reflect.py prints for a failed call, as grpcurl does. */
export interface CallFailure {
  code: string;
  message: string;
  details: Record<string, unknown>[];
}

/** Parses the error block of a failed call; fails when there is none. */
export function callFailure(run: Run): CallFailure {
  const code = /^ {2}Code: (\S+)$/m.exec(run.stderr)?.[1];
  const message = /^ {2}Message: (.*)$/m.exec(run.stderr)?.[1];
  assert.ok(run.stderr.startsWith('ERROR:\n') && code !== undefined && message !== undefined, `no gRPC error in:\n${run.stderr}`);
  assert.doesNotMatch(run.stderr, /^ {2}\(/m, 'the google.rpc.Status in grpc-status-details-bin agrees with grpc-status and decodes');
  const details = [...run.stderr.matchAll(/^ {2}\d+\)\t(.*)$/gm)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);
  return { code, message, details };
}

/** grpcurl's exit code for a call that failed with this status: 64 + the code's number. */
export const STATUS_EXIT: Record<string, number> = { INVALID_ARGUMENT: 67, DEADLINE_EXCEEDED: 68, NOT_FOUND: 69, ALREADY_EXISTS: 70, FAILED_PRECONDITION: 73 };

/** A real ferryd child process with the embedded simulator (SMALL_ARRAY); stopped when the test ends, before `dir` goes. */
export async function ferrydProcess(t: { after(fn: () => unknown): void }, dir: string): Promise<ChildDaemon> {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'ferryd.json');
  writeFileSync(config, JSON.stringify({ simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }));
  const d = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--config', config, '--log-level', 'info']);
  defer(t, async () => {
    if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGTERM');
    await d.exited;
  });
  return d;
}
