/**
 * ferryd's Prometheus metrics, scraped over HTTP from real daemons (real
 * gRPC on 127.0.0.1:0, real LevelDB, the embedded simulator or the scripted
 * driver) while migrations run. Every scrape is parsed strictly: by the
 * Python client's parser (Debian's python3-prometheus-client, always
 * /usr/bin/python3) and by `promtool check metrics` (Debian's prometheus),
 * which also lints the names; a lint problem on a ferry_ name fails the
 * test. Missing packages fail with the command that installs them; they are
 * never a silent skip. Each wait is on an event (a migration's watch, a
 * driver call entering the scripted driver), never a sleep.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { control } from '../fixtures/plugins/scripted/index.ts';
import { SimClient } from '../simulator/helpers.ts';
import { inProcessDaemon, pluginsDir, rejectsWith, ROOT, runProcess, scriptedConfig, SMALL_ARRAY, tempDir, testConfig, waitForState } from '../helpers.ts';

const PYTHON = '/usr/bin/python3';
const INSTALL_HINT = 'apt-get install prometheus python3-prometheus-client';
const KiB = 1024;
const MiB = 1024 * KiB;

/** Reads the text format on stdin with prometheus_client's parser and prints its families as JSON (values as strings: NaN and Inf are not JSON). */
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{'name': f.name, 'type': f.type, 'samples': [[s.name, s.labels, repr(float(s.value))] for s in f.samples]} for f in text_string_to_metric_families(sys.stdin.read())]
print(json.dumps(out))
`;


interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One scrape, parsed. */
class Scrape {
  constructor(
    readonly samples: Sample[],
    /** Each family's type, by its name as the parser gives it (a counter without `_total`). */
    readonly types: Map<string, string>,
  ) {}

  /** The samples of `name` whose labels include `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample of `name` with `labels` (undefined if there is none). */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.find(name, labels);
    assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
    return found[0]?.value;
  }

  /** Every sample, of any metric, labelled with migration `id`. */
  ofMigration(id: string): Sample[] {
    return this.samples.filter((s) => s.labels.migration === id);
  }
}

/** Scrapes `address`, checks the answer's status and content type, and parses it with both strict parsers. */
async function scrape(address: string): Promise<Scrape> {
  const res = await fetch(`http://${address}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();

  const parsed = await runProcess(PYTHON, ['-c', PARSE], {}, text);
  if (parsed.spawnError || /No module named/.test(parsed.stderr)) assert.fail(`${PYTHON} cannot import prometheus_client (${parsed.spawnError?.message ?? parsed.stderr.trim().split('\n').at(-1)}); ${INSTALL_HINT}`);
  assert.equal(parsed.code, 0, `prometheus_client could not parse the scrape: ${parsed.stderr}`);
  const families = JSON.parse(parsed.stdout) as { name: string; type: string; samples: [string, Record<string, string>, string][] }[];

  // promtool exits 0 when clean, 3 for lint problems only, 1 when it cannot parse the text.
  const lint = await runProcess('promtool', ['check', 'metrics'], {}, text);
  if (lint.spawnError) assert.fail(`promtool cannot be run (${lint.spawnError.message}); ${INSTALL_HINT}`);
  assert.ok(lint.code === 0 || lint.code === 3, `promtool could not parse the scrape (exit ${lint.code}): ${lint.stdout}${lint.stderr}`);
  const ours = `${lint.stdout}${lint.stderr}`.split('\n').filter((line) => line.startsWith('ferry_'));
  assert.deepEqual(ours, [], 'promtool finds problems with ferry_ metric names');

  return new Scrape(
    families.flatMap((f) => f.samples.map(([name, labels, value]) => ({ name, labels, value: Number(value) }))),
    new Map(families.map((f) => [f.name, f.type])),
  );
}

/** ferryd with the embedded simulator and metrics on 127.0.0.1:0; copies at 2 MiB/s, so phase 1 of a 4 MiB share is seen moving. */
async function simulatorDaemon(t: TestContext) {
  const dir = tempDir(t);
  const config = testConfig(
    `${dir}/data`,
    { simulator: { config: { ...SMALL_ARRAY, arrayBandwidthBytesPerSec: 2 * MiB } }, engine: { minPollMs: 1, progressPersistMs: 50 }, metricsListen: '127.0.0.1:0' },
    pluginsDir(dir, ['simulator']),
  );
  const { daemon, client } = await inProcessDaemon(t, config);
  const sim = new SimClient(daemon.address);
  t.after(() => sim.close());
  assert.ok(daemon.metricsAddress, 'the daemon says where its metrics are');
  assert.match(daemon.metricsAddress, /^127\.0\.0\.1:[1-9]\d*$/, 'port 0 became the port bound');
  return { daemon, client, sim, metrics: daemon.metricsAddress };
}

describe('ferryd metrics', () => {
  test("show a migration's progress while it copies, and its phase 1 and cutover freeze once they happen", async (t) => {
    const { client, sim, metrics } = await simulatorDaemon(t);
    const size = 4 * MiB;
    await sim.call('CreateShare', { shareId: 'm1', backend: 'alpha', pool: 'gold', sizeBytes: size });
    for (let off = 0; off < size; off += 512 * KiB) await sim.call('WriteShare', { shareId: 'm1', offset: off, data: randomBytes(512 * KiB) });

    const before = await scrape(metrics);
    assert.equal(before.value('ferry_copied_bytes_total', { backend: 'alpha' }), 0);
    assert.equal(before.value('ferry_migrations', { state: 'IN_PROGRESS', backend: 'alpha' }), 0);
    assert.deepEqual(before.find('ferry_cutover_freeze_seconds_count'), [], 'no cutover yet');

    const m = await client.startMigration({ share: { backend: 'alpha', shareId: 'm1' }, destination: 'beta#bronze', writable: true, maxDowntimeMs: 2_000 });
    const labels = { migration: m.id, backend: 'alpha' };

    // Phase 1 under way: the migration's own series are there, and what it copied is what GetMigration shows, or more.
    const seen = await client.waitFor(m.id, (x) => x.progress.copiedBytes > 0);
    const during = await scrape(metrics);
    const copied1 = during.value('ferry_migration_copied_bytes', labels);
    assert.ok(copied1 !== undefined && copied1 >= seen.progress.copiedBytes && copied1 > 0, `copied ${copied1} while the watch saw ${seen.progress.copiedBytes}`);
    assert.ok((during.value('ferry_copied_bytes_total', { backend: 'alpha' }) ?? 0) >= copied1);
    const ratio = during.value('ferry_migration_progress_ratio', labels)!;
    assert.ok(ratio > 0 && ratio <= 1, `progress ratio ${ratio}`);
    assert.ok((during.value('ferry_migration_last_progress_timestamp_seconds', labels) ?? 0) > 0);
    const states = during.find('ferry_migration_state', labels);
    assert.equal(states.length, 1, 'one state series per live migration');
    assert.equal(states[0]!.value, 1);
    assert.match(states[0]!.labels.state!, /^(IN_PROGRESS|PHASE1_DONE)$/);
    assert.equal(during.value('ferry_migrations', { state: states[0]!.labels.state!, backend: 'alpha' }), 1);

    // ... and they move as the copy goes on (2 MiB/s leaves most of the share to copy; if not, say so rather than wait forever).
    assert.ok(copied1 < size, `phase 1 had copied all ${size} bytes by the first scrape: this test cannot see the copy move`);
    const later = await client.waitFor(m.id, (x) => x.progress.copiedBytes > copied1);
    const moving = await scrape(metrics);
    assert.ok(moving.value('ferry_migration_copied_bytes', labels)! >= later.progress.copiedBytes, 'the migration\'s copied bytes grew');
    assert.ok(moving.value('ferry_copied_bytes_total', { backend: 'alpha' })! > copied1, 'the backend\'s copied bytes counter grew');

    await waitForState(client, m.id, 'PHASE1_DONE');
    const parked = await scrape(metrics);
    assert.equal(parked.value('ferry_phase1_duration_seconds_count', { backend: 'alpha' }), 1);
    assert.equal(parked.value('ferry_migration_state', { ...labels, state: 'PHASE1_DONE' }), 1);
    assert.deepEqual(parked.find('ferry_cutover_freeze_seconds_count'), [], 'phase 1 done is not a cutover');

    await client.completeMigration(m.id);
    const done = await waitForState(client, m.id, 'SUCCESS');
    const after = await scrape(metrics);
    assert.equal(after.value('ferry_cutover_freeze_seconds_count', { backend: 'alpha' }), 1);
    const freezeSum = after.value('ferry_cutover_freeze_seconds_sum', { backend: 'alpha' })!;
    assert.ok(Math.abs(freezeSum - done.cutover!.freezeMs / 1000) < 1e-9, `freeze sum ${freezeSum} s, the driver reported ${done.cutover!.freezeMs} ms`);
    assert.deepEqual(after.ofMigration(m.id), [], 'a terminal migration has no series of its own');
    assert.equal(after.value('ferry_migrations', { state: 'SUCCESS', backend: 'alpha' }), 1);
    assert.equal(after.value('ferry_migrations', { state: 'PHASE1_DONE', backend: 'alpha' }), 0);
    assert.equal(after.value('ferry_copied_bytes_total', { backend: 'alpha' }), size, 'a SUCCESS has copied the whole share');

    // The driver's calls by method and outcome, and the store's writes.
    for (const method of ['start', 'continue', 'complete']) {
      assert.ok((after.value('ferry_driver_call_duration_seconds_count', { backend: 'alpha', method, outcome: 'ok' }) ?? 0) >= 1, `no ${method} call counted`);
    }
    assert.ok((after.value('ferry_store_write_duration_seconds_count', { kind: 'migrations' }) ?? 0) >= 3, 'the store writes of the migration are timed');
    assert.equal(after.types.get('ferry_copied_bytes'), 'counter');
    assert.equal(after.types.get('ferry_cutover_freeze_seconds'), 'histogram');
    assert.equal(after.types.get('ferry_migrations'), 'gauge');
  });

  test('count gRPC requests by method and code, refusals included, and show backends up and the process', async (t) => {
    const { client, metrics } = await simulatorDaemon(t);
    await rejectsWith(client.getMigration('no-such-migration'), 'NOT_FOUND');
    await rejectsWith(client.getMigration('no-such-migration'), 'NOT_FOUND');
    await client.listBackends();
    await rejectsWith(client.startMigration({ share: { backend: 'alpha', shareId: 'nope' }, destination: 'beta#bronze' }), 'NOT_FOUND');

    const s = await scrape(metrics);
    assert.equal(s.value('ferry_grpc_requests_total', { method: 'ferry.v1.MigrationService/GetMigration', code: 'NOT_FOUND' }), 2);
    const listed = s.find('ferry_grpc_requests_total', { method: 'ferry.v1.MigrationService/ListBackends' });
    assert.deepEqual(listed.map((x) => [x.labels.code, x.value]), [['OK', 1]], 'one request, counted once');
    assert.equal(s.value('ferry_grpc_requests_total', { method: 'ferry.v1.MigrationService/StartMigration', code: 'NOT_FOUND' }), 1);
    assert.deepEqual(s.find('ferry_grpc_requests_total', { method: 'ferry.v1.MigrationService/GetMigration', code: 'OK' }), []);
    // The refused start asked the driver, which answered NOT_FOUND: an outcome of its own.
    assert.equal(s.value('ferry_driver_call_duration_seconds_count', { backend: 'alpha', method: 'checkCompatibility', outcome: 'NOT_FOUND' }), 1);
    assert.equal(s.value('ferry_backend_up', { backend: 'alpha' }), 1);
    assert.equal(s.value('ferry_backend_up', { backend: 'beta' }), 1);
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes']) {
      assert.equal(s.find(name).length, 1, `no ${name}`);
    }
  });

  test('show call slots in use, runners waiting for one, a failed driver call and a backend NOT_SERVING (scripted driver)', async (t) => {
    control.reset();
    t.after(() => control.reset());
    const dir = tempDir(t);
    // Four slots: starts may hold one of them, so a second start waits while the first is held.
    const config = scriptedConfig(dir, {
      engine: { maxConcurrentCalls: 4 },
      metricsListen: '127.0.0.1:0',
      backends: [
        { name: 'a', plugin: 'scripted' },
        { name: 'b', plugin: 'scripted' },
        { name: 'ghost', plugin: 'nosuch' },
      ],
    });
    const { daemon, client } = await inProcessDaemon(t, config);
    const metrics = daemon.metricsAddress!;

    const idle = await scrape(metrics);
    assert.equal(idle.value('ferry_engine_call_slots'), 4);
    assert.equal(idle.value('ferry_engine_call_slots_in_use'), 0);
    assert.equal(idle.value('ferry_engine_runners_waiting'), 0);
    assert.equal(idle.value('ferry_backend_up', { backend: 'a' }), 1);
    assert.equal(idle.value('ferry_backend_up', { backend: 'ghost' }), 0, 'a backend whose plugin is missing is NOT_SERVING');

    const held = control.hold('start');
    const first = await client.startMigration({ share: { backend: 'a', shareId: 's1' }, destination: 'b#p1' });
    await held.entered;
    const second = await client.startMigration({ share: { backend: 'a', shareId: 's2' }, destination: 'b#p1' });
    const busy = await scrape(metrics);
    assert.equal(busy.value('ferry_engine_call_slots_in_use'), 1, 'the held start holds a slot');
    assert.equal(busy.value('ferry_engine_runners_waiting'), 1, "the second start waits for the starts' share");
    assert.equal(busy.value('ferry_migrations', { state: 'STARTING', backend: 'a' }), 2);

    control.fail('continue', 'UNAVAILABLE');
    held.release();
    await waitForState(client, first.id, 'PHASE1_DONE');
    await waitForState(client, second.id, 'PHASE1_DONE');
    const settled = await scrape(metrics);
    assert.equal(settled.value('ferry_engine_call_slots_in_use'), 0);
    assert.equal(settled.value('ferry_engine_runners_waiting'), 0);
    assert.equal(settled.value('ferry_driver_call_duration_seconds_count', { backend: 'a', method: 'continue', outcome: 'UNAVAILABLE' }), 1);
    assert.equal(settled.value('ferry_driver_call_duration_seconds_count', { backend: 'a', method: 'start', outcome: 'ok' }), 2);
  });

  test('answer 404 for anything but GET /metrics', async (t) => {
    const { metrics } = await simulatorDaemon(t);
    assert.equal((await fetch(`http://${metrics}/`)).status, 404);
    assert.equal((await fetch(`http://${metrics}/metrics/x`)).status, 404);
    assert.equal((await fetch(`http://${metrics}/metrics`, { method: 'POST', body: '' })).status, 404);
    assert.equal((await fetch(`http://${metrics}/metrics?x=1`)).status, 200);
  });

  test('are off by default: no metrics server, and no address', async (t) => {
    const dir = tempDir(t);
    const config = testConfig(`${dir}/data`, { simulator: { config: SMALL_ARRAY } }, pluginsDir(dir, ['simulator']));
    assert.equal(config.metricsListen, null);
    const { daemon } = await inProcessDaemon(t, config);
    assert.equal(daemon.metricsAddress, null);
  });
});

/** The README's alert rules, as written there: the ```yaml block of `groups:` in its Metrics section. */
function readmeRules(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n### Metrics\n'));
  const rules = /```yaml\n(groups:\n[^]*?)```/.exec(section)?.[1];
  assert.ok(rules, 'no ```yaml block of groups: in the Metrics section of README.md');
  return rules;
}

/**
 * Series for `promtool test rules` (one sample a minute from time 0): a
 * migration that stopped moving at 0, one that moves, one parked in
 * PHASE1_DONE with nothing to copy, and a backend that goes NOT_SERVING at
 * minute 3 beside one that stays up.
 */
const RULE_TESTS = `
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ferry_migration_last_progress_timestamp_seconds{migration="m-stuck",backend="alpha"}'
        values: '0x10'
      - series: 'ferry_migration_state{migration="m-stuck",backend="alpha",state="IN_PROGRESS"}'
        values: '1x10'
      - series: 'ferry_migration_last_progress_timestamp_seconds{migration="m-moving",backend="alpha"}'
        values: '0+60x10'
      - series: 'ferry_migration_state{migration="m-moving",backend="alpha",state="IN_PROGRESS"}'
        values: '1x10'
      - series: 'ferry_migration_last_progress_timestamp_seconds{migration="m-parked",backend="beta"}'
        values: '0x10'
      - series: 'ferry_migration_state{migration="m-parked",backend="beta",state="PHASE1_DONE"}'
        values: '1x10'
      - series: 'ferry_backend_up{backend="alpha"}'
        values: '1x10'
      - series: 'ferry_backend_up{backend="beta"}'
        values: '1 1 1 0x7'
    alert_rule_test:
      - eval_time: 2m
        alertname: FerryMigrationStalled
        exp_alerts: []
      - eval_time: 5m
        alertname: FerryMigrationStalled
        exp_alerts:
          - exp_labels: { severity: warning, migration: m-stuck, backend: alpha }
            exp_annotations:
              summary: 'Migration m-stuck from alpha has copied nothing for 5m 0s'
              description: 'ferry show m-stuck shows its progress and last error; ferryd fails it as STALLED after engine.stallTimeoutMs.'
      - eval_time: 4m
        alertname: FerryBackendNotServing
        exp_alerts: []
      - eval_time: 6m
        alertname: FerryBackendNotServing
        exp_alerts:
          - exp_labels: { severity: critical, backend: beta }
            exp_annotations:
              summary: 'Backend beta is NOT_SERVING'
              description: 'Its migrations cannot move; ferry backends gives the reason.'
`;

test("the README's alert rules pass promtool's check, and fire for a stalled migration and a NOT_SERVING backend only", async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'rules.yaml'), readmeRules());
  writeFileSync(join(dir, 'rules.test.yaml'), RULE_TESTS);
  const promtool = (...args: string[]) => runProcess('promtool', args, {}, '').then((r) => {
    if (r.spawnError) assert.fail(`promtool cannot be run (${r.spawnError.message}); ${INSTALL_HINT}`);
    return r;
  });
  const check = await promtool('check', 'rules', join(dir, 'rules.yaml'));
  assert.equal(check.code, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /SUCCESS: 2 rules found/);
  const unit = await promtool('test', 'rules', join(dir, 'rules.test.yaml'));
  assert.equal(unit.code, 0, `promtool test rules: ${unit.stdout}${unit.stderr}`);
});
