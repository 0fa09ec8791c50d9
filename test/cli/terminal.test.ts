/**
 * `ferry watch` and `ferry migrate` on a real terminal: bin/ferry.mjs runs
 * on a pseudo-terminal (util-linux `script`) against a real ferryd in this
 * process, and what it wrote is played into a headless xterm, so the tests
 * read the screen a person would see: wrapped lines, lines written over,
 * the bar redrawn in place.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import xterm from '@xterm/headless';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, ROOT, SMALL_ARRAY, tempDir, testConfig, waitForState } from '../helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const COLUMNS = 80;

/** A word for sh, quoted. */
const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

/** bin/ferry.mjs on a pseudo-terminal COLUMNS wide, its stdout and stderr both on it, as in a shell. */
function onTerminal(args: string[]) {
  const command = `stty cols ${COLUMNS} rows 50; exec ${[process.execPath, join(ROOT, 'bin/ferry.mjs'), ...args].map(quote).join(' ')}`;
  const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let raw = '';
  const waiting: { text: string; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    raw += d.toString();
    for (const w of waiting.filter((x) => raw.includes(x.text))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  });
  const exited = once(child, 'close').then(([code]) => code as number | null);
  return {
    /** Resolves once `text` has been written to the terminal. */
    seen: (text: string) => (raw.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ text, resolve }))),
    exited,
    /** The screen once the command has exited: one entry per line as written, rows that wrapped joined again. */
    async screen(): Promise<string[]> {
      await exited;
      const term = new xterm.Terminal({ cols: COLUMNS, rows: 50, scrollback: 1000, allowProposedApi: true });
      await new Promise<void>((resolve) => term.write(raw, resolve));
      const buffer = term.buffer.active;
      const out: string[] = [];
      for (let i = 0; i < buffer.length; i++) {
        const row = buffer.getLine(i)!;
        const text = row.translateToString(true);
        if (row.isWrapped && out.length > 0) out[out.length - 1] += text;
        else out.push(text);
      }
      while (out.length > 0 && out.at(-1)!.trim() === '') out.pop();
      term.dispose();
      return out.map((l) => l.trimEnd());
    },
  };
}

async function system(t: TestContext, options: { unixSocket?: boolean } = {}) {
  const dir = tempDir(t);
  const config = testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }, pluginsDir(dir, ['simulator']));
  if (options.unixSocket) config.listen = `unix:${dir}/ferryd.sock`;
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  return { config, daemon, client, sim };
}

async function share(sim: SimClient, shareId: string): Promise<void> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: 1 * MiB });
  await sim.call('WriteShare', { shareId, offset: 0, data: Buffer.alloc(64 * KiB, shareId) });
}

/** A frame of the bar once the migration ended: final figures, the average throughput, no ETA and no dirty bytes. */
const FINAL_FRAME = /^SUCCESS\s+=+ 100\.0% \| 1\.0 MiB\/1\.0 MiB \| [\d.]+ \S+\/s average$/;
/** The summary under the bar. */
const SUMMARY = /^SUCCESS\s+100\.0%\s+1\.0 MiB of 1\.0 MiB\s+[\d.]+ \S+\/s average\s+freeze [\d.]+ ms\s+final delta \S+ \S+$/;

describe('ferry on a terminal', () => {
  test('watch: the id, share and destination above the bar, then its final frame and the summary, each on its own line', async (t) => {
    const { daemon, client, sim } = await system(t);
    await share(sim, 'tty1');
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'tty1' }, destination: 'beta#bronze' });
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);

    const term = onTerminal(['--server', daemon.address, 'watch', m.id]);
    const screen = await term.screen();
    assert.equal(await term.exited, 0, screen.join('\n'));
    assert.deepEqual(screen.length, 3, `expected header, bar, summary:\n${screen.join('\n')}`);
    assert.equal(screen[0], `migration ${m.id}: alpha/tty1 -> beta#bronze`);
    assert.match(screen[1]!, FINAL_FRAME);
    assert.match(screen[2]!, SUMMARY);
    assert.ok(screen.every((l) => l.length <= COLUMNS || !l.includes('|')), 'the bar is wider than the terminal');
  });

  test('migrate: the id, share and destination above the bar, and the summary last', async (t) => {
    const { daemon, sim } = await system(t);
    await share(sim, 'tty2');
    const term = onTerminal(['--server', daemon.address, 'migrate', 'alpha/tty2', 'beta#bronze']);
    const screen = await term.screen();
    assert.equal(await term.exited, 0, screen.join('\n'));
    assert.match(screen[0]!, /^migration mig-[0-9a-f]{16}-[0-9a-f]{8}: alpha\/tty2 -> beta#bronze$/);
    assert.match(screen.at(-2)!, FINAL_FRAME);
    assert.match(screen.at(-1)!, SUMMARY);
  });

  test('a reconnect notice stands whole on its own line, and the bar and the summary go on below it', async (t) => {
    const first = await system(t, { unixSocket: true });
    await share(first.sim, 'tty3');
    await first.sim.call('SetFaults', { stallCopy: true });
    const m = await first.client.startMigration({ share: { backend: 'alpha', shareId: 'tty3' }, destination: 'beta#bronze' });
    await waitForState(first.client, m.id, 'IN_PROGRESS');

    const term = onTerminal(['--server', first.daemon.address, 'watch', m.id]);
    await term.seen('IN_PROGRESS');
    await first.daemon.close(1_000);
    await term.seen('lost ferryd');

    // The same address and data dir: the migration resumes in the second daemon.
    const second = await inProcessDaemon(t, first.config);
    const sim2 = new SimClient(second.daemon.address);
    t.after(() => sim2.close());
    await sim2.call('ClearFaults', {});
    await waitForState(second.client, m.id, 'PHASE1_DONE');
    await second.client.completeMigration(m.id);

    const screen = await term.screen();
    assert.equal(await term.exited, 0, screen.join('\n'));
    const notice = screen.findIndex((l) => l.startsWith('ferry: lost ferryd'));
    assert.ok(notice > 0, `no notice on the screen:\n${screen.join('\n')}`);
    assert.ok(screen[notice]!.length > COLUMNS, 'the notice fits one row: this test would not see it cut');
    assert.match(screen[notice]!, new RegExp(`^ferry: lost ferryd at unix:\\S+ \\(UNAVAILABLE: .*\\); watching ${m.id} again for up to 60 s$`));
    assert.equal(screen[0], `migration ${m.id}: alpha/tty3 -> beta#bronze`);
    assert.match(screen[notice - 1]!, /^IN_PROGRESS\s+[=-]+\s+[\d.]+% \| /, 'the bar before the notice');
    assert.match(screen.at(-2)!, FINAL_FRAME);
    assert.match(screen.at(-1)!, SUMMARY);
    assert.equal(screen.length, notice + 3, `expected the final frame and the summary right after the notice:\n${screen.join('\n')}`);
  });
});
