/**
 * The etcd harness (test/fixtures/etcd.ts) on real etcd processes, through
 * the etcd3 client that issue 15's etcd store is to use: a member serves
 * put, get, txn and leases; a three-member cluster keeps taking writes with a member SIGKILLed
 * and the member catches up when restarted, and comes back with its data
 * after every member was stopped at once; a SIGSTOPped member lets a call
 * run out its deadline and serves again once continued; and what the harness
 * started is gone when a test ends, and when the test process is SIGKILLed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { startEtcd } from '../fixtures/etcd.ts';
import { ROOT } from '../helpers.ts';

const within = (ms: number) => ({ deadline: Date.now() + ms });
/** Each test fails in a minute, instead of the runner's five, if what it waits for never happens. */
const bounded = { timeout: 60_000 };

/** True while a process with this pid runs (a zombie, dead but not yet reaped by its parent or init, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

test('one member: put, get, a compare-and-swap txn and a lease whose revoke deletes its key', bounded, async (t) => {
  const etcd = await startEtcd(t, { members: 1 });
  assert.equal(etcd.endpoints.length, 1);
  assert.match(etcd.endpoints[0]!, /^http:\/\/127\.0\.0\.1:\d+$/);
  const client = etcd.client();

  await client.put('ferry/a').value('1');
  assert.equal(await client.get('ferry/a').string(), '1');

  // A txn that swaps only if the value is still what was read.
  const swapped = await client
    .if('ferry/a', 'Value', '==', '1')
    .then(client.put('ferry/a').value('2'))
    .else(client.get('ferry/a'))
    .commit();
  assert.equal(swapped.succeeded, true, 'the swap on the value read was refused');
  const refused = await client
    .if('ferry/a', 'Value', '==', '1')
    .then(client.put('ferry/a').value('3'))
    .else(client.get('ferry/a'))
    .commit();
  assert.equal(refused.succeeded, false, 'the swap on a value since changed went through');
  assert.equal(refused.responses[0]?.response_range?.kvs[0]?.value.toString(), '2', 'the else branch reads the value that beat the swap');
  assert.equal(await client.get('ferry/a').string(), '2');

  // A lease: a key put under it is there while it lives, and gone once the lease is revoked.
  const lease = client.lease(30, { autoKeepAlive: false });
  const id = await lease.grant();
  await lease.put('ferry/owner').value('d1');
  const live = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  assert.ok(Number(live.TTL) > 0 && Number(live.TTL) <= 30, `lease TTL ${live.TTL}`);
  assert.deepEqual(live.keys.map(String), ['ferry/owner']);
  assert.equal(Number((await lease.keepaliveOnce()).TTL), 30, 'a keepalive renews the lease to its full TTL');
  await lease.revoke();
  assert.equal(await client.get('ferry/owner').string(), null, 'the key outlived its revoked lease');

  // A lease nobody keeps alive expires by itself, and a watch sees its key deleted.
  const short = client.lease(2, { autoKeepAlive: false });
  await short.put('ferry/short').value('d2');
  const watcher = await client.watch().key('ferry/short').create();
  await new Promise<void>((resolve) => watcher.once('delete', () => resolve()));
  assert.equal(await client.get('ferry/short').string(), null);
  assert.equal(Number((await client.leaseClient.leaseTimeToLive({ ID: await short.grant() })).TTL), -1, 'etcd still has the expired lease');
});

test('three members: writes go on with a follower SIGKILLed, and the follower restarted on its data dir catches up', bounded, async (t) => {
  const etcd = await startEtcd(t, { members: 3 });
  assert.equal(new Set(etcd.endpoints).size, 3);
  const client = etcd.client();
  await client.put('ferry/before').value('1');

  const leader = await etcd.leader();
  const victim = (leader + 1) % 3;
  const { pid, clientUrl } = etcd.members[victim]!;
  await etcd.kill(victim, 'SIGKILL');
  assert.equal(alive(pid!), false, 'the member is still running');
  assert.equal(etcd.members[victim]!.pid, null);
  // Its own endpoint is down...
  const alone = etcd.client({ hosts: clientUrl });
  await assert.rejects(alone.get('ferry/before').string(), GRPCUnavailableError);
  alone.close();

  // ...and a client of every endpoint still writes, through the other two.
  for (let i = 0; i < 20; i++) await client.put(`ferry/during/${i}`).value(String(i));
  await client.put('ferry/before').value('2');

  await etcd.restart(victim);
  assert.notEqual(etcd.members[victim]!.pid, pid);
  // A linearizable read served by the restarted member alone (on its old port) sees every write it missed.
  const back = etcd.client({ hosts: clientUrl });
  assert.equal(await back.get('ferry/before').string(), '2');
  assert.equal(await back.getAll().prefix('ferry/during/').count(), 20);
  // Its own copy, read without asking the leader, has them too.
  assert.equal(await back.get('ferry/during/19').serializable(true).string(), '19');
});

test('three members: every member stopped at once, then all restarted on their data', bounded, async (t) => {
  const etcd = await startEtcd(t, { members: 3 });
  const client = etcd.client();
  await client.put('ferry/kept').value('1');
  await etcd.stopAll();
  assert.deepEqual(etcd.members.map((m) => m.pid), [null, null, null]);
  await assert.rejects(client.get('ferry/kept').options(within(2_000)).string(), GRPCUnavailableError);
  await etcd.restartAll();
  assert.equal(await etcd.client().get('ferry/kept').string(), '1');
});

test('a SIGSTOPped member lets a call run out its deadline, and serves again after SIGCONT', bounded, async (t) => {
  const etcd = await startEtcd(t, { members: 1 });
  const client = etcd.client();
  await client.put('ferry/k').value('v');

  await etcd.kill(0, 'SIGSTOP');
  assert.equal(etcd.members[0]!.stopped, true);
  await assert.rejects(client.get('ferry/k').options(within(300)).string(), GRPCDeadlineExceededError);

  await etcd.kill(0, 'SIGCONT');
  assert.equal(etcd.members[0]!.stopped, false);
  // A new client: etcd3 retries a call that ran out its deadline with the same, passed deadline, and
  // those failures open its circuit breaker on that host for 5 s, so `client` refuses calls for a while.
  assert.equal(await etcd.client().get('ferry/k').string(), 'v');
});

test('what a test started is gone when it ends: its members, stopped ones too, and their temp dir', bounded, async (t) => {
  let pid = 0;
  let dir = '';
  await t.test('a test that leaves its etcd member stopped', async (t) => {
    const etcd = await startEtcd(t, { members: 1 });
    pid = etcd.members[0]!.pid!;
    dir = dirname(dirname(etcd.members[0]!.dataDir));
    await etcd.kill(0, 'SIGSTOP');
    assert.ok(existsSync(dir));
  });
  assert.equal(alive(pid), false, `etcd pid ${pid} outlived its test`);
  assert.equal(existsSync(dir), false, `${dir} outlived its test`);
});

test('what a test process started is gone when that process is SIGKILLed before it can clean up', bounded, async (t) => {
  const holder = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/etcd-holder.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(holder, 'exit');
  t.after(() => holder.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: holder.stdout! }), 'line')) as [string];
  const { pid, dir } = JSON.parse(line) as { pid: number; dir: string };
  assert.ok(alive(pid) && existsSync(dir));
  holder.kill('SIGKILL');
  await exited;
  // The reaper acts when it sees its pipe close; wait for it, with a deadline.
  const deadline = Date.now() + 10_000;
  while ((alive(pid) || existsSync(dir)) && Date.now() < deadline) await sleep(20);
  assert.equal(alive(pid), false, `etcd pid ${pid} outlived the process that started it`);
  assert.equal(existsSync(dir), false, `${dir} outlived the process that started it`);
});
