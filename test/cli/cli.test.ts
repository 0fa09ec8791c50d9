/**
 * The `ferry` CLI against a real ferryd: the daemon runs in this process with
 * its embedded simulated array (real gRPC on 127.0.0.1:0, real LevelDB, the
 * simulator driver loaded through the plugin loader), and the CLI's `run`
 * runs in-process with captured stdout and stderr.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { run, type CliIO } from '../../client/cli.ts';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, tempDir, testConfig, waitForState, SMALL_ARRAY } from '../helpers.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The small array of test/daemon/simulator-e2e.test.ts: 4 KiB blocks, 64 KiB chunks, a tiny pool. */

async function system(t: TestContext, options: { engine?: Record<string, number>; unixSocket?: boolean } = {}) {
  const dir = tempDir(t);
  const config = testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1, ...options.engine } }, pluginsDir(dir, ['simulator']));
  if (options.unixSocket) config.listen = `unix:${dir}/ferryd.sock`;
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  /** Runs the CLI against this daemon. */
  const ferry = (argv: string[], options: { isTTY?: boolean; signal?: AbortSignal; onStdout?: (text: string) => void } = {}) => cli(['--server', daemon.address, ...argv], options);
  return { daemon, client, sim, ferry };
}

/** A writable that keeps what is written; optionally looks like a terminal. */
class Capture extends Writable {
  text = '';
  isTTY?: boolean;
  columns?: number;
  constructor(private readonly onText?: (text: string) => void) {
    super();
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    const text = chunk.toString();
    this.text += text;
    this.onText?.(text);
    done();
  }
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(argv: string[], options: { isTTY?: boolean; signal?: AbortSignal; env?: Record<string, string>; onStdout?: (text: string) => void; onStderr?: (text: string) => void } = {}): Promise<Result> {
  const stdout = new Capture(options.onStdout);
  const stderr = new Capture(options.onStderr);
  if (options.isTTY) {
    stdout.isTTY = true;
    stdout.columns = 120;
  }
  const io: CliIO = { stdout, stderr, env: options.env ?? {}, isTTY: options.isTTY === true };
  if (options.signal) io.signal = options.signal;
  const code = await run(argv, io);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** Asserts the exit code, showing both streams when it is not the one expected. */
function exits(r: Result, code: number): Result {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

async function share(sim: SimClient, shareId: string, size = 1 * MiB): Promise<void> {
  await sim.call('CreateShare', { shareId, backend: 'alpha', pool: 'gold', sizeBytes: size });
  await sim.call('WriteShare', { shareId, offset: 0, data: Buffer.alloc(64 * KiB, shareId) });
}

/** A port that nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

describe('ferry CLI against ferryd with the embedded simulator', () => {
  test('backends: an aligned table with pools in MiB, and the same data as JSON', async (t) => {
    const { ferry } = await system(t);
    const human = exits(await ferry(['backends']), 0);
    const rows = lines(human.stdout);
    assert.match(rows[0]!, /^BACKEND\s+HEALTH\s+DRIVER\s+POOL\s+CAPACITY\s+FREE\s+CAPABILITIES\s+HOST PATH$/);
    assert.match(human.stdout, /^alpha\s+SERVING\s+simulator \S+\s+gold\s+256\.0 MiB\s+256\.0 MiB\s+writable, nondisruptive/m);
    assert.match(human.stdout, /^\s+tiny\s+1\.0 MiB\s+1\.0 MiB$/m);
    const poolColumn = rows[0]!.indexOf('POOL');
    assert.ok(rows.slice(1).every((r) => /\S/.test(r[poolColumn] ?? '')), 'pool names are not aligned under POOL');

    const json = JSON.parse(exits(await ferry(['--json', 'backends']), 0).stdout) as { backends: { name: string; health: string; pools: { name: string }[] }[] };
    assert.deepEqual(json.backends.map((b) => [b.name, b.health]), [['alpha', 'BACKEND_HEALTH_SERVING'], ['beta', 'BACKEND_HEALTH_SERVING']]);
    assert.deepEqual(json.backends[1]!.pools.map((p) => p.name), ['bronze', 'tiny']);
  });

  test('check: says yes for a pool with room, no with the reason for one without, and exits 0 for both', async (t) => {
    const { ferry, sim } = await system(t);
    await share(sim, 'chk', 2 * MiB);
    const yes = exits(await ferry(['check', 'alpha/chk', 'beta#bronze', '--writable']), 0);
    assert.match(yes.stdout, /^compatible\s+yes$/m);
    assert.match(yes.stdout, /^share size\s+2\.0 MiB$/m);
    const no = exits(await ferry(['check', 'alpha/chk', 'beta#tiny']), 0);
    assert.match(no.stdout, /^compatible\s+no$/m);
    assert.match(no.stdout, /^ {2}- .*bytes free/m);
    const json = JSON.parse(exits(await ferry(['check', 'alpha/chk', 'host1@beta#tiny', '--json']), 0).stdout) as { compatible: boolean; reasons: string[] };
    assert.equal(json.compatible, false);
    assert.equal(json.reasons.length, 1);
  });

  test('start, watch --until PHASE1_DONE, complete, watch: plain lines when not a terminal, ending with SUCCESS', async (t) => {
    const { ferry, sim } = await system(t);
    await share(sim, 'w1');
    const started = JSON.parse(exits(await ferry(['start', 'alpha/w1', 'beta#bronze', '--writable', '--json']), 0).stdout) as { id: string; state: string };
    assert.equal(started.state, 'MIGRATION_STATE_STARTING');

    const phase1 = exits(await ferry(['watch', started.id, '--until', 'phase1-done', '--interval-ms', '0']), 0);
    assert.match(lines(phase1.stdout).at(-1)!, /^PHASE1_DONE\s+100\.0%\s+1\.0 MiB of 1\.0 MiB/);

    const completing = exits(await ferry(['complete', started.id]), 0);
    assert.match(completing.stdout, /^state\s+(COMPLETING|SUCCESS)$/m);

    const watched = exits(await ferry(['watch', started.id]), 0);
    const out = lines(watched.stdout);
    assert.equal(out[0], `migration ${started.id}: alpha/w1 -> beta#bronze`);
    assert.match(out.at(-1)!, /^SUCCESS\s+100\.0%\s+1\.0 MiB of 1\.0 MiB\s+[\d.]+ \S+\/s average\s+freeze [\d.]+ ms\s+final delta/);
    assert.doesNotMatch(watched.stdout, /\x1b\[/, 'escape codes in non-terminal output');
    assert.equal(watched.stderr, '');
  });

  test('watch on a terminal draws a live bar, then the final line', async (t) => {
    const { ferry, sim, client } = await system(t);
    await share(sim, 'tty');
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'tty' }, destination: 'beta#bronze' });
    await waitForState(client, m.id, 'PHASE1_DONE');
    await client.completeMigration(m.id);
    const r = exits(await ferry(['watch', m.id], { isTTY: true }), 0);
    assert.ok(r.stdout.startsWith(`migration ${m.id}: alpha/tty -> beta#bronze\n`), 'no header above the bar');
    assert.match(r.stdout, /\x1b\[1G/, 'the bar is not redrawn in place');
    // The last frame: final figures and the average throughput; no ETA or dirty bytes, which no longer move.
    assert.match(r.stdout, /SUCCESS\s+=+ 100\.0% \| 1\.0 MiB\/1\.0 MiB \| [\d.]+ \S+\/s average\x1b/);
    assert.match(r.stdout, /\nSUCCESS\s+100\.0%\s+1\.0 MiB of 1\.0 MiB\s+[\d.]+ \S+\/s average\s+freeze/);
  });

  test('migrate --json: one JSON document, the migration in SUCCESS, and the share on its new backend', async (t) => {
    const { ferry, sim } = await system(t);
    await share(sim, 'm1', 2 * MiB);
    const r = exits(await ferry(['--json', 'migrate', 'alpha/m1', 'beta#bronze', '--writable', '--nondisruptive', '--max-bandwidth', '64MiB', '--max-downtime-ms', '2000', '--cutover-action', 'force', '--request-id', 'req-m1']), 0);
    const m = JSON.parse(r.stdout) as Record<string, unknown> & { state: string; cutover: { freezeMs: number }; createdAt: string; finishedAt: string };
    assert.equal(m.state, 'MIGRATION_STATE_SUCCESS');
    assert.ok(m.cutover.freezeMs > 0);
    assert.equal(m.maxBandwidthBytesPerSec, 64 * MiB);
    assert.equal(m.maxDowntimeMs, 2000);
    assert.equal(m.cutoverAction, 'CUTOVER_ACTION_FORCE');
    assert.equal(m.requestId, 'req-m1');
    assert.equal(m.nondisruptive, true);
    assert.match(m.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Date.parse(m.finishedAt) >= Date.parse(m.createdAt));
    assert.equal((await sim.call('GetShare', { shareId: 'm1' })).backend, 'beta');
    assert.equal(r.stderr, '');
  });

  test('migrate without --json shows progress lines and exits 0 on SUCCESS', async (t) => {
    const { ferry, sim } = await system(t);
    await share(sim, 'm2');
    const r = exits(await ferry(['migrate', 'alpha/m2', 'beta#bronze']), 0);
    const out = lines(r.stdout);
    assert.match(out[0]!, /^migration mig-\S+: alpha\/m2 -> beta#bronze$/);
    const states = out.slice(1).map((l) => l.split(/\s+/)[0]);
    for (const s of ['PHASE1_DONE', 'COMPLETING', 'SUCCESS']) assert.ok(states.includes(s), `no ${s} line in ${r.stdout}`);
    assert.equal(states.at(-1), 'SUCCESS');
  });

  test('migrate gives up with exit 6 when every cutover runs past its window, leaving the migration in PHASE1_DONE to complete later', async (t) => {
    const { ferry, sim, client } = await system(t);
    await share(sim, 'slowcut');
    await sim.call('SetFaults', { cutoverDelayMs: 300 });
    const r = exits(await ferry(['migrate', 'alpha/slowcut', 'beta#bronze', '--max-downtime-ms', '50', '--cutover-attempts', '2', '--json']), 6);
    const m = JSON.parse(r.stdout) as { id: string; state: string; lastCutoverAbort: { message: string } | null };
    assert.equal(m.state, 'MIGRATION_STATE_PHASE1_DONE');
    assert.ok(m.lastCutoverAbort, 'no last_cutover_abort on the migration');
    assert.match(r.stderr, new RegExp(`^ferry: gave up after 2 cutover attempt\\(s\\) of ${m.id}: each ran past its 50 ms window`));
    assert.match(r.stderr, new RegExp(`ferry complete ${m.id}`));

    await sim.call('ClearFaults', {});
    exits(await ferry(['complete', m.id]), 0);
    exits(await ferry(['watch', m.id]), 0);
    assert.equal((await client.getMigration(m.id)).state, 'MIGRATION_STATE_SUCCESS');
  });

  test('migrate exits 5 when the migration ends in ERROR, printing the migration\'s error code', async (t) => {
    // A copy that never moves, and a stall timeout short enough to end it.
    const { ferry, sim } = await system(t, { engine: { stallTimeoutMs: 200 } });
    await share(sim, 'stuck');
    await sim.call('SetFaults', { stallCopy: true });
    const r = exits(await ferry(['migrate', 'alpha/stuck', 'beta#bronze', '--json']), 5);
    const m = JSON.parse(r.stdout) as { id: string; state: string; error: { code: string } };
    assert.equal(m.state, 'MIGRATION_STATE_ERROR');
    assert.equal(m.error.code, 'STALLED');
    assert.match(r.stderr, new RegExp(`^ferry: migration ${m.id} ended in ERROR: STALLED: `));
    assert.equal((await sim.call('GetShare', { shareId: 'stuck' })).backend, 'alpha');
  });

  test('--server unix:PATH reaches a daemon on a unix socket', async (t) => {
    const { daemon } = await system(t, { unixSocket: true });
    assert.match(daemon.address, /^unix:/);
    const r = exits(await cli(['--server', daemon.address, '--json', 'backends']), 0);
    assert.equal((JSON.parse(r.stdout) as { backends: unknown[] }).backends.length, 2);
  });

  test('watch survives a ferryd restart: it watches again, and sees the resumed migration through to SUCCESS', async (t) => {
    const dir = tempDir(t);
    const config = testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY }, engine: { minPollMs: 1 } }, pluginsDir(dir, ['simulator']));
    // A unix socket: the restarted daemon is at the same address.
    config.listen = `unix:${dir}/ferryd.sock`;
    const first = await inProcessDaemon(t, config);
    const sim1 = new SimClient(first.daemon.address);
    t.after(() => sim1.close());
    await share(sim1, 'restart');
    await sim1.call('SetFaults', { stallCopy: true });
    const m = await first.client.startMigration({ share: { backend: 'alpha', shareId: 'restart' }, destination: 'beta#bronze' });
    await waitForState(first.client, m.id, 'IN_PROGRESS');

    let watchingNow!: () => void;
    let lostNow!: () => void;
    const watchingSeen = new Promise<void>((resolve) => (watchingNow = resolve));
    const lostSeen = new Promise<void>((resolve) => (lostNow = resolve));
    const watching = cli(['--server', first.daemon.address, 'watch', m.id, '--interval-ms', '0'], {
      onStdout: (text) => text.includes('IN_PROGRESS') && watchingNow(),
      onStderr: (text) => text.includes('lost ferryd') && lostNow(),
    });
    await watchingSeen;
    await first.daemon.close(1_000);
    await lostSeen;

    const second = await inProcessDaemon(t, config);
    const sim2 = new SimClient(second.daemon.address);
    t.after(() => sim2.close());
    await sim2.call('ClearFaults', {});
    await waitForState(second.client, m.id, 'PHASE1_DONE');
    await second.client.completeMigration(m.id);

    const r = exits(await watching, 0);
    assert.match(lines(r.stdout).at(-1)!, /^SUCCESS\b/);
    assert.match(r.stderr, new RegExp(`^ferry: lost ferryd at unix:.*\\(UNAVAILABLE: .*\\); watching ${m.id} again for up to 60 s$`, 'm'));
  });

  test('watch that loses ferryd for good says so, watches again for --reconnect-ms, then exits 4, without grpc-js\'s empty "Resolution note:"', async (t) => {
    const { ferry, sim, client, daemon } = await system(t);
    await share(sim, 'gone');
    await sim.call('SetFaults', { stallCopy: true });
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'gone' }, destination: 'beta#bronze' });
    await waitForState(client, m.id, 'IN_PROGRESS');
    let closing: Promise<void> | undefined;
    const r = exits(await ferry(['watch', m.id, '--reconnect-ms', '300'], { onStdout: (text) => void (text.includes('IN_PROGRESS') && (closing ??= daemon.close(1_000))) }), 4);
    await closing;
    assert.match(r.stderr, new RegExp(`^ferry: lost ferryd at ${daemon.address} \\(UNAVAILABLE: .*\\); watching ${m.id} again for up to 300 ms$`, 'm'));
    assert.match(r.stderr, new RegExp(`^ferry: UNAVAILABLE: cannot reach ferryd at ${daemon.address}: lost the watch of ${m.id}, .* within 300 ms \\(last: .*\\)`, 'm'));
    assert.doesNotMatch(r.stderr, /Resolution note/);
  });

  test('complete before phase 1 is done exits 3 naming FAILED_PRECONDITION; cancel works; watch then exits 5', async (t) => {
    const { ferry, sim } = await system(t);
    await share(sim, 'early');
    await sim.call('SetFaults', { stallCopy: true });
    const id = (JSON.parse(exits(await ferry(['start', 'alpha/early', 'beta#bronze', '--max-bandwidth', '1.5MiB/s', '--json']), 0).stdout) as { id: string }).id;

    const early = exits(await ferry(['complete', id]), 3);
    assert.match(early.stderr, /^ferry: FAILED_PRECONDITION: .*(STARTING|IN_PROGRESS)/);
    assert.equal(early.stdout, '');

    const shown = JSON.parse(exits(await ferry(['show', id, '--json']), 0).stdout) as { maxBandwidthBytesPerSec: number };
    assert.equal(shown.maxBandwidthBytesPerSec, 1.5 * MiB);

    exits(await ferry(['cancel', id]), 0);
    const watched = exits(await ferry(['watch', id]), 5);
    assert.match(lines(watched.stdout).at(-1)!, /^CANCELLED\b/);
    assert.match(watched.stderr, new RegExp(`^ferry: migration ${id} was CANCELLED`));
    // Cancelling again is idempotent; completing now is refused.
    exits(await ferry(['cancel', id]), 0);
    assert.match(exits(await ferry(['complete', id]), 3).stderr, /^ferry: FAILED_PRECONDITION: /);
  });

  test('show and list, human and JSON; list filters by state and pages', async (t) => {
    const { ferry, sim, client } = await system(t);
    const ids: string[] = [];
    for (const name of ['l1', 'l2', 'l3']) {
      await share(sim, name);
      ids.push((await client.migrate({ share: { backend: 'alpha', shareId: name }, destination: 'beta#bronze' })).id);
    }
    await sim.call('SetFaults', { stallCopy: true });
    await share(sim, 'l4');
    const active = (await client.startMigration({ share: { backend: 'alpha', shareId: 'l4' }, destination: 'beta#bronze' })).id;
    // The stalled copy holds it in IN_PROGRESS: a state that stays put while the list is read.
    await waitForState(client, active, 'IN_PROGRESS');

    const shown = exits(await ferry(['show', ids[0]!]), 0).stdout;
    assert.match(shown, new RegExp(`^id\\s+${ids[0]}$`, 'm'));
    assert.match(shown, /^state\s+SUCCESS$/m);
    assert.match(shown, /^share\s+alpha\/l1$/m);
    assert.match(shown, /^cutover\s+freeze [\d.]+ ms, final delta [\d.]+ \S*B, verified in freeze [\d.]+ \S*B$/m);
    // Finished: its final figures (all copied, nothing dirty) and phase 1's average throughput, no ETA.
    assert.match(shown, /^progress\s+100\.0%\s+1\.0 MiB of 1\.0 MiB copied, 0 B remaining, 0 B dirty$/m);
    assert.match(shown, /^throughput\s+[\d.]+ \S+\/s average \(phase 1, \d+ pass(es)?\)$/m);
    assert.doesNotMatch(shown, /MIGRATION_STATE_/);

    const table = lines(exits(await ferry(['list']), 0).stdout);
    assert.match(table[0]!, /^ID\s+STATE\s+SHARE\s+DESTINATION\s+PROGRESS\s+SIZE\s+CREATED$/);
    assert.deepEqual(table.slice(1).map((l) => l.split(/\s+/).slice(0, 2)), [...ids.map((id) => [id, 'SUCCESS']), [active, 'IN_PROGRESS']]);

    const success = JSON.parse(exits(await ferry(['list', '--state', 'success', '--json']), 0).stdout) as { migrations: { id: string; state: string }[]; nextPageToken: string };
    assert.deepEqual(success.migrations.map((m) => m.id), ids);
    assert.equal(success.nextPageToken, '');
    // The state as --json printed it is taken back as it is.
    const asPrinted = JSON.parse(exits(await ferry(['list', '--state', success.migrations[0]!.state, '--json']), 0).stdout) as { migrations: { id: string }[] };
    assert.deepEqual(asPrinted.migrations.map((m) => m.id), ids);

    const page = exits(await ferry(['list', '--page-size', '2']), 0).stdout;
    assert.equal(lines(page).filter((l) => l.startsWith('mig-')).length, 2);
    const token = /^more: ferry list --page-token (\S+)/m.exec(page)?.[1];
    assert.ok(token, `no next-page hint in:\n${page}`);
    const rest = JSON.parse(exits(await ferry(['list', '--page-size', '2', '--page-token', token, '--json']), 0).stdout) as { migrations: { id: string }[] };
    assert.deepEqual(rest.migrations.map((m) => m.id), [ids[2], active]);
    const all = JSON.parse(exits(await ferry(['list', '--page-size', '1', '--all', '--json']), 0).stdout) as { migrations: { id: string }[] };
    assert.deepEqual(all.migrations.map((m) => m.id), [...ids, active]);
    assert.match(exits(await ferry(['list', '--backend', 'nosuch']), 0).stdout, /^no migrations$/m);

    assert.match(exits(await ferry(['show', 'mig-0000000000000000-00000000']), 3).stderr, /^ferry: NOT_FOUND: /);
    assert.match(exits(await ferry(['show', 'not-an-id']), 3).stderr, /^ferry: NOT_FOUND: no migration has id not-an-id/);
    assert.match(exits(await ferry(['show', 'x'.repeat(200)]), 3).stderr, /^ferry: INVALID_ARGUMENT: id is 200 bytes long/);
  });

  test('usage errors exit 2 naming the bad argument, before any call', async () => {
    // Nothing listens at this address: a call would exit 4, so exit 2 proves none was made.
    const server = `127.0.0.1:${await closedPort()}`;
    const cases: [string[], RegExp][] = [
      [['start', 'alpha/s', 'beta-bronze'], /argument 'destination'.*"beta-bronze" is not a destination: expected backend#pool/],
      [['migrate', 'alpha/s', 'beta#bronze', '--max-bandwidth', '10XB'], /--max-bandwidth.*"10XB" is not a size/],
      [['check', 'alpha-s', 'beta#bronze'], /argument 'share'.*"alpha-s" is not a share: expected backend\/share_id/],
      [['start', 'alpha/s', 'beta#bronze', '--cutover-action', 'later'], /--cutover-action.*Allowed choices are abort, force/],
      [['start', 'alpha/s', 'beta#bronze', '--max-downtime-ms', '-5'], /--max-downtime-ms/],
      [['list', '--state', 'DONE'], /--state.*"DONE" is not a state/],
      [['list', '--page-size', '0'], /--page-size.*from 1 to 1000/],
      [['list', '--all', '--page-token', 'x'], /--page-token.*cannot be used with.*--all/],
      [['show'], /missing required argument 'id'/],
      [['watch', ''], /argument 'id'.*the migration id is empty/],
      [['complete', ' '], /argument 'id'.*the migration id is empty/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['backends', '--bogus'], /unknown option '--bogus'/],
      [['--timeout-ms', 'soon', 'backends'], /--timeout-ms/],
      [[], /Usage: ferry/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(['--server', server, ...argv]);
      assert.equal(r.code, 2, `ferry ${argv.join(' ')}: exit ${r.code}, stderr: ${r.stderr}`);
      assert.match(r.stderr, message, `ferry ${argv.join(' ')}`);
      assert.equal(r.stdout, '', `ferry ${argv.join(' ')} wrote to stdout`);
    }
    const empty = await cli(['backends'], { env: { FERRY_SERVER: 'unix:' } });
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /--server "unix:" must be HOST:PORT or unix:PATH/);
  });

  test('--help lists the commands and documents the exit codes (exit 0)', async () => {
    const r = exits(await cli(['--help']), 0);
    for (const word of ['backends', 'check', 'start', 'complete', 'cancel', 'show', 'list', 'watch', 'migrate', 'FERRY_SERVER']) assert.match(r.stdout, new RegExp(word));
    for (const code of ['0', '2', '3', '4', '5', '6']) assert.match(r.stdout, new RegExp(`^ {2}${code} +\\S`, 'm'), `exit code ${code} is not documented`);
    assert.match(exits(await cli(['migrate', '--help']), 0).stdout, /--max-bandwidth <size>/);
  });

  test('an unreachable daemon exits 4 for calls and for watch, and FERRY_SERVER picks the address', async () => {
    const port = await closedPort();
    for (const argv of [['backends'], ['watch', 'mig-0000000000000000-00000000'], ['migrate', 'alpha/s', 'beta#bronze']]) {
      const r = await cli(['--server', `127.0.0.1:${port}`, ...argv]);
      assert.equal(r.code, 4, `ferry ${argv.join(' ')}: exit ${r.code}, stderr: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^ferry: UNAVAILABLE: cannot reach ferryd at 127\\.0\\.0\\.1:${port}: `));
    }
    const viaEnv = await cli(['backends'], { env: { FERRY_SERVER: `127.0.0.1:${port}` } });
    assert.equal(viaEnv.code, 4);
    assert.match(viaEnv.stderr, new RegExp(`at 127\\.0\\.0\\.1:${port}`));
  });

  test('FERRY_SERVER is used when --server is not given; a refusal from ferryd exits 3', async (t) => {
    const { daemon } = await system(t);
    const r = exits(await cli(['backends', '--json'], { env: { FERRY_SERVER: daemon.address } }), 0);
    assert.equal((JSON.parse(r.stdout) as { backends: unknown[] }).backends.length, 2);
    const refused = exits(await cli(['start', 'alpha/nosuch', 'beta#bronze'], { env: { FERRY_SERVER: daemon.address } }), 3);
    assert.match(refused.stderr, /^ferry: NOT_FOUND: .*nosuch/);
  });

  test('an interrupted watch exits 130 and says the migration goes on', async (t) => {
    const { ferry, sim, client } = await system(t);
    await share(sim, 'intr');
    await sim.call('SetFaults', { stallCopy: true });
    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'intr' }, destination: 'beta#bronze' });
    const interrupt = new AbortController();
    // Interrupt once the first progress line is out, as a person pressing Ctrl-C would.
    const r = exits(await ferry(['watch', m.id], { signal: interrupt.signal, onStdout: (text) => text.includes('%') && interrupt.abort() }), 130);
    assert.match(r.stderr, new RegExp(`^ferry: interrupted; migration ${m.id} goes on in ferryd`));
    assert.notEqual((await client.getMigration(m.id)).state, 'MIGRATION_STATE_CANCELLED');
  });
});
