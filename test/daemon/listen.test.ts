/**
 * ferryd and ferry-sim as real processes when a listen address cannot be
 * had: a port that another program already listens on stops either with
 * exit 2 and one line on stderr naming the address and the setting to
 * change, like any other bad setting. ferryd's metrics port (--metrics-listen)
 * is refused the same way, naming its own setting.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, runProcess, tempDir } from '../helpers.ts';

const CASES = [
  { what: 'ferryd on a port', bin: 'bin/ferryd.mjs', flags: (address: string) => ['--listen', address], says: 'ferryd', hint: '; set another with --listen' },
  { what: 'ferry-sim on a port', bin: 'bin/ferry-sim.mjs', flags: (address: string) => ['--listen', address], says: 'ferry-sim', hint: '; set another with --listen' },
  {
    what: 'ferryd on a metrics port',
    bin: 'bin/ferryd.mjs',
    flags: (address: string) => ['--listen', '127.0.0.1:0', '--metrics-listen', address],
    says: 'ferryd',
    hint: '; set another with --metrics-listen, FERRY_METRICS_LISTEN or metricsListen in the config file$',
  },
] as const;

for (const c of CASES) {
  test(`${c.what} another program listens on exits 2 with one line naming the address and the setting`, async (t) => {
    const holder = createServer((socket) => socket.destroy());
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    t.after(() => holder.close());
    const address = `127.0.0.1:${(holder.address() as { port: number }).port}`;

    const { code, stderr } = await runProcess(process.execPath, [join(ROOT, c.bin), ...c.flags(address), '--data-dir', join(tempDir(t), 'data')]);

    assert.equal(code, 2, `stderr: ${stderr}`);
    const lines = stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
    assert.match(lines[0]!, new RegExp(`^${c.says}: cannot listen on ${address.replace(/\./g, '\\.')}: the address is in use .*\\(EADDRINUSE\\)${c.hint}`));
  });
}
