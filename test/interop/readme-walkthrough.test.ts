/**
 * The README's grpcurl walk-through works as written. Every grpcurl command
 * in README.md's code blocks is sent, same method, same JSON, through
 * test/interop/reflect.py (grpcurl's part played by a client that knows only
 * what server reflection tells it) to a real ferryd set up as the README
 * leaves it: the embedded array with a share `demo` on alpha/gold.
 *
 * What the shell does, the test does: `localhost:50051` becomes the daemon's
 * address, `id=$(… | jq -r .id)` keeps the id for the `$id` of later
 * commands, and a comment "Ctrl-C once it shows STATE" stops that watch at
 * STATE, as a reader would. A comment "ends by itself after STATE" is checked.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers.ts';
import { defer, SimClient, tempDir } from '../simulator/helpers.ts';
import { expand, grpcurlCommands, type ReadmeCommand } from './readme-commands.ts';
import { ferrydProcess, messages, pythonSetup, reflect } from './reflect-client.ts';

const README_ADDRESS = 'localhost:50051';
const MiB = 1024 * 1024;

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
  if (target !== README_ADDRESS) throw new Error(`expected ${README_ADDRESS} as the address: ${command.text}`);
  if (verb === 'list' || verb === 'describe') return [verb, ...rest];
  if (verb === undefined || rest.length > 0) throw new Error(`expected one SERVICE/METHOD: ${command.text}`);
  const until = /Ctrl-C once it shows (MIGRATION_STATE_\w+)/.exec(command.comment ?? '');
  return ['call', verb, ...(data === undefined ? [] : ['-d', data]), ...(until ? ['--until', `state=${until[1]}`] : [])];
}

/** A dot path (`id`, `share.backend`) into a JSON message. */
function field(message: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], message);
}

test('the README\'s grpcurl commands run as written against a real ferryd, on server reflection alone', async (t) => {
  await pythonSetup();
  const commands = grpcurlCommands(readFileSync(join(ROOT, 'README.md'), 'utf8'));
  const methods = commands.map((c) => c.words.find((w) => w.includes('/')));
  for (const m of ['StartMigration', 'WatchMigration', 'CompleteMigration'].map((n) => `ferry.v1.MigrationService/${n}`)) {
    assert.ok(methods.includes(m), `the README's grpcurl walk-through has no ${m}: ${commands.map((c) => c.text).join('\n')}`);
  }

  const dir = await tempDir(t);
  const daemon = await ferrydProcess(t, dir);
  const sim = new SimClient(daemon.address);
  defer(t, () => sim.close());
  // As "Your first migration" leaves it (smaller, so that the test is quick).
  await sim.call('CreateShare', { shareId: 'demo', backend: 'alpha', pool: 'gold', sizeBytes: MiB });
  await sim.call('WriteShare', { shareId: 'demo', offset: 0, data: Buffer.alloc(256 * 1024, 'demo') });
  const before = (await sim.call('ChecksumShare', { shareId: 'demo' })).sha256 as string;

  const vars: Record<string, string> = {};
  for (const command of commands) {
    const r = await reflect(daemon.address, ...reflectArgs(command, vars));
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

  // The commands did what the README says: the share lives on beta now, unchanged.
  assert.equal((await sim.call('GetShare', { shareId: 'demo' })).backend, 'beta');
  assert.equal((await sim.call('ChecksumShare', { shareId: 'demo' })).sha256, before);
});
