/**
 * The README's "Your first migration" runs as written, top to bottom, against
 * a real ferryd started as `npm start` starts it (the default embedded array,
 * nothing configured). Each code block of the section runs in order:
 *
 * - a block of `npx ferry…` commands is a real bash script (`set -euo
 *   pipefail`), run in the checkout with jq and npx as a reader has them. The
 *   one change is the address: `127.0.0.1:50051` becomes the daemon's, and
 *   FERRY_SERVER says it to the `ferry` commands that name none.
 * - the grpcurl block is sent command by command, same method, same JSON,
 *   through test/interop/reflect.py (grpcurl's part played by a client that
 *   knows only what server reflection tells it). What the shell does, the test
 *   does: `id=$(… | jq -r .id)` keeps the id for the `$id` of later commands,
 *   and a comment "Ctrl-C once it shows STATE" stops that watch at STATE, as
 *   a reader would. A comment "ends by itself after STATE" is checked.
 *
 * After each block the share is where the README says, with the same data
 * (the second block moves it to another array, by the host data path).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { ROOT, spawnDaemon } from '../helpers.ts';
import { defer, SimClient, tempDir } from '../simulator/helpers.ts';
import { expand, grpcurlCommands, sectionBlocks, type ReadmeCommand } from './readme-commands.ts';
import { messages, pythonSetup, reflect } from './reflect-client.ts';

const README_GRPCURL_ADDRESS = 'localhost:50051';
const README_ADDRESS = '127.0.0.1:50051';

/** reflect.py's arguments (after the address) for a README grpcurl command; throws on anything grpcurl-specific the test does not know. */
function reflectArgs(command: ReadmeCommand, vars: Record<string, string>): string[] {
  let data: string | undefined;
  const positional: string[] = [];
  const words = command.words.map((w) => expand(w, vars));
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-plaintext') continue;
    if (w === '-d') data = words[++i];
    else if (w.startsWith('-')) throw new Error(`grpcurl flag ${w} is not known to this test: ${command.text}`);
    else positional.push(w);
  }
  const [target, verb, ...rest] = positional;
  if (target !== README_GRPCURL_ADDRESS) throw new Error(`expected ${README_GRPCURL_ADDRESS} as the address: ${command.text}`);
  if (verb === 'list' || verb === 'describe') return [verb, ...rest];
  if (verb === undefined || rest.length > 0) throw new Error(`expected one SERVICE/METHOD: ${command.text}`);
  const until = /Ctrl-C once it shows (MIGRATION_STATE_\w+)/.exec(command.comment ?? '');
  return ['call', verb, ...(data === undefined ? [] : ['-d', data]), ...(until ? ['--until', `state=${until[1]}`] : [])];
}

/** A dot path (`id`, `share.backend`) into a JSON message. */
function field(message: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], message);
}

/** Runs the README's grpcurl commands in `block` in order, on reflection alone. */
async function runGrpcurlBlock(address: string, block: string): Promise<void> {
  const commands = grpcurlCommands('```\n' + block + '```\n');
  const methods = commands.map((c) => c.words.find((w) => w.includes('/')));
  for (const m of ['StartMigration', 'WatchMigration', 'CompleteMigration'].map((n) => `ferry.v1.MigrationService/${n}`)) {
    assert.ok(methods.includes(m), `the README's grpcurl walk-through has no ${m}: ${commands.map((c) => c.text).join('\n')}`);
  }
  const vars: Record<string, string> = {};
  for (const command of commands) {
    const r = await reflect(address, ...reflectArgs(command, vars));
    assert.equal(r.code, 0, `README: ${command.text}\nexited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    if (command.assign) {
      const value = field(messages(r)[0], command.assign.field);
      assert.ok(typeof value === 'string' && value !== '', `README: ${command.text}\nprinted no ${command.assign.field}:\n${r.stdout}`);
      vars[command.assign.name] = value;
    }
    const ends = /ends by itself after (MIGRATION_STATE_\w+)/.exec(command.comment ?? '');
    if (ends) assert.equal(messages(r).at(-1).state, ends[1], `README: ${command.text}`);
    if (command.words.includes('list')) assert.match(r.stdout, /^ferry\.v1\.MigrationService$/m);
  }
}

/** Runs a README block of shell commands with bash, as a reader pastes it; fails with the trace and output of the command that failed. */
async function runShellBlock(address: string, block: string): Promise<void> {
  const script = `set -euo pipefail -x\n${block.replaceAll(README_ADDRESS, address)}`;
  const child = spawn('bash', ['-c', script], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, FERRY_SERVER: address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, `README block:\n${block}\nexited ${code}; its trace and output:\n${output}`);
}

test('the README\'s first migration runs as written, top to bottom: its ferry commands in bash, its grpcurl commands on server reflection alone', async (t) => {
  await pythonSetup();
  const blocks = sectionBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'), 'Your first migration');
  assert.equal(blocks.length, 4, 'the walk-through is four blocks: a one-shot migrate, the same to another array (the host path), the two phases by hand, the same with grpcurl');
  const [oneShot, otherArray, twoPhases, grpcurl] = blocks as [string, string, string, string];
  assert.match(oneShot, /npx ferry migrate /);
  assert.match(otherArray, /npx ferry migrate .*gamma#iron/);
  assert.match(twoPhases, /npx ferry complete /);
  assert.match(grpcurl, /grpcurl /);

  const dir = await tempDir(t);
  const daemon = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')]);
  defer(t, async () => {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGTERM');
    await daemon.exited;
  });
  const sim = new SimClient(daemon.address);
  defer(t, () => sim.close());
  const where = async () => {
    const share = await sim.call('GetShare', { shareId: 'demo' });
    return { at: `${share.backend}#${share.pool}`, sha256: (await sim.call('ChecksumShare', { shareId: 'demo' })).sha256 as string };
  };

  await runShellBlock(daemon.address, oneShot);
  const written = await where();
  assert.equal(written.at, 'beta#bronze', 'after ferry migrate, demo lives on beta');

  await runShellBlock(daemon.address, otherArray);
  assert.deepEqual(await where(), { at: 'gamma#iron', sha256: written.sha256 }, 'after ferry migrate to gamma, demo lives on the second array, unchanged');
  const moved = (await sim.call('ListShares', {})).shares as { shareId: string; backend: string }[];
  assert.deepEqual(moved.map((x) => [x.shareId, x.backend]), [['demo', 'gamma']], 'the host path left a copy behind');

  await runShellBlock(daemon.address, twoPhases);
  assert.deepEqual(await where(), { at: 'alpha#silver', sha256: written.sha256 }, 'after the two phases, demo is back on alpha, unchanged');

  await runGrpcurlBlock(daemon.address, grpcurl);
  assert.deepEqual(await where(), { at: 'beta#bronze', sha256: written.sha256 }, 'after the grpcurl walk-through, demo is on beta again, unchanged');
});
