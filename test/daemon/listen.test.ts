/**
 * ferryd and ferry-sim as real processes when their listen address cannot be
 * had: a port that another program already listens on stops either with
 * exit 2 and one line on stderr naming the address, like any other bad
 * setting.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, tempDir } from '../helpers.ts';

for (const [name, bin] of [
  ['ferryd', 'bin/ferryd.mjs'],
  ['ferry-sim', 'bin/ferry-sim.mjs'],
] as const) {
  test(`${name} on a port another program listens on exits 2 with one line naming the address`, async (t) => {
    const holder = createServer((socket) => socket.destroy());
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    t.after(() => holder.close());
    const address = `127.0.0.1:${(holder.address() as { port: number }).port}`;

    const child = spawn(process.execPath, [join(ROOT, bin), '--listen', address, '--data-dir', join(tempDir(t), 'data')], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, 'close')) as [number | null];

    assert.equal(code, 2, `stderr: ${stderr}`);
    const lines = stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
    assert.match(lines[0]!, new RegExp(`^${name}: cannot listen on ${address.replace(/\./g, '\\.')}: the address is in use .*\\(EADDRINUSE\\); set another with --listen`));
  });
}
