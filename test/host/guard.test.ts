/**
 * The driver guard against a hostile driver: whatever a driver throws or
 * returns, in every call, the guard answers with a FerryError naming the
 * driver, the backend and the call, and never throws anything else. Also
 * FerryError's `instanceof`, which the guard relies on. The real guard over
 * the scripted fixture plugin; the same failures through a running daemon
 * are in test/daemon/guard-daemon.test.ts.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { DEFAULT_DEADLINES, type Deadlines } from '../../host/deadlines.ts';
import { GuardedDriver } from '../../host/guard.ts';
import { silentLog } from '../../lib/log.ts';
import { FerryError, type Driver, type MigrationSpec } from '../../plugins/api/index.ts';
import { control, createDriver } from '../fixtures/plugins/scripted/index.ts';

type CallName = 'describe' | 'checkCompatibility' | 'start' | 'continue' | 'complete' | 'cancel' | 'progress';
const CALLS: CallName[] = ['describe', 'checkCompatibility', 'start', 'continue', 'complete', 'cancel', 'progress'];

const spec = (id = 'mig-1'): MigrationSpec => ({
  id,
  source: { backend: 'b1', shareId: 's1' },
  destination: { backend: 'b2', pool: 'p1' },
  writable: true,
  nondisruptive: false,
  preserveMetadata: false,
  preserveSnapshots: false,
  newShareType: '',
  maxBandwidthBytesPerSec: 0,
  maxDowntimeMs: 1000,
  cutoverAction: 'abort',
  dataPath: 'driver',
});

/** The scripted driver behind the real guard, logging (as the plugin host does) with the backend and plugin on every line. */
async function guarded(deadlines: Partial<Deadlines> = {}, remote = false) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }).child({ backend: 'b1', plugin: 'scripted' });
  const driver = (await createDriver({ backend: 'b1', options: {}, daemonAddress: '127.0.0.1:1', log })) as Driver;
  const guard = new GuardedDriver('b1', { name: 'scripted', version: '1.0.0', remote }, driver, { ...DEFAULT_DEADLINES, ...deadlines }, log);
  return { guard, lines };
}

/** Makes one call of a kind through the guard. */
function call(guard: GuardedDriver, name: CallName, outer?: AbortSignal, id = 'mig-1'): Promise<unknown> {
  const c = { migration: spec(id), checkpoint: null, log: silentLog() };
  switch (name) {
    case 'describe':
      return guard.describe();
    case 'checkCompatibility':
      return guard.checkCompatibility(spec(id), silentLog());
    default:
      return guard[name](c, outer);
  }
}

/** Resolves with what the call rejected with; fails if it resolved. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('the call succeeded');
}

/** Asserts a clean failure: a real FerryError with `code`, one bounded line naming the driver, the backend and the call. */
function assertClean(err: unknown, code: string, name: string): FerryError {
  assert.ok(err instanceof FerryError && Object.getPrototypeOf(err) === FerryError.prototype, `not a FerryError: ${typeof err}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, new RegExp(`^driver scripted \\(backend b1\\) .*\\b${name}\\b`));
  assert.ok(err.message.length < 500 && !err.message.includes('\n'), `message of ${err.message.length} characters`);
  return err;
}

const trap = () => {
  throw new Error('trap');
};
/** A Proxy whose every trap throws. */
const trapProxy = () =>
  new Proxy({}, { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap, set: trap, defineProperty: trap, deleteProperty: trap, isExtensible: trap, preventExtensions: trap, setPrototypeOf: trap });
const revokedProxy = () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
};
const HUGE = 'x'.repeat(5_000_000);

const THROWN: [string, () => unknown][] = [
  ['a Proxy whose every trap throws', trapProxy],
  ['a revoked Proxy', revokedProxy],
  ['a Proxy that claims to be a FerryError', () => new Proxy(new FerryError('NOT_FOUND', 'fake'), { get: trap })],
  ['an object whose message and code getters throw', () => ({ get message() { return trap(); }, get code() { return trap(); } })],
  ['an Error whose message getter throws', () => Object.defineProperty(new Error('x'), 'message', { get: trap })],
  ['an object whose toString and toJSON throw', () => ({ toString: trap, toJSON: trap, [Symbol.toPrimitive]: trap })],
  ['a Symbol', () => Symbol('boom')],
  ['null', () => null],
  ['undefined', () => undefined],
  ['an Error with a 5 MB message', () => new Error(HUGE)],
  ['a FerryError-shaped object without the brand', () => ({ name: 'FerryError', code: 'NOT_FOUND', message: 'not really' })],
  ['a FerryError with a code Ferry does not know', () => Object.assign(new FerryError('NOT_FOUND', 'x'), { code: 'NEWER_CODE' })],
];

describe('GuardedDriver, whatever a driver throws', () => {
  beforeEach(() => control.reset());

  for (const [what, make] of THROWN) {
    test(`${what}: every call fails with DRIVER_ERROR naming the driver, backend and call, and logs a bounded line`, async () => {
      const { guard, lines } = await guarded();
      for (const name of CALLS) {
        control.throwing.set(name, make);
        const err = assertClean(await rejection(call(guard, name)), 'DRIVER_ERROR', name);
        assert.match(err.message, /unexpected error \(see the daemon log\)/);
        const line = lines.findLast((l) => l.msg === 'driver threw an unexpected error');
        assert.equal(line?.call, name);
        assert.equal(line?.backend, 'b1');
        assert.equal(typeof (line?.err as { message?: unknown }).message, 'string');
        assert.ok(JSON.stringify(line).length < 5_000, 'the log line copied the whole message');
      }
    });
  }

  test('a genuine FerryError keeps its code, its details and (a prefix of) its message, with the driver, backend and call named', async () => {
    const { guard } = await guarded();
    for (const name of CALLS) {
      control.throwing.set(name, () => new FerryError('NOT_FOUND', `share s1 does not exist ${HUGE}`, { details: { share: 's1' } }));
      const err = assertClean(await rejection(call(guard, name)), 'NOT_FOUND', name);
      assert.match(err.message, new RegExp(`^driver scripted \\(backend b1\\) failed in ${name}: share s1 does not exist x+… \\(5000024 characters in all\\)$`));
      assert.deepEqual(err.details, { share: 's1' });
    }
  });

  test('a FerryError from another copy of the driver API is genuine too', async () => {
    const copy = (await import(`../../plugins/api/errors.ts?copy=${Date.now()}`)) as typeof import('../../plugins/api/errors.ts');
    assert.notEqual(copy.FerryError, FerryError, 'the import did not make a second copy');
    const { guard } = await guarded();
    control.throwing.set('continue', () => new copy.FerryError('UNAVAILABLE', 'array down'));
    const err = assertClean(await rejection(call(guard, 'continue')), 'UNAVAILABLE', 'continue');
    assert.equal(err.retryable, true);
  });
});

describe('GuardedDriver, whatever a driver returns', () => {
  beforeEach(() => control.reset());

  const RETURNED: [string, () => unknown, RegExp][] = [
    ['a Proxy whose traps throw (but has no then)', () => new Proxy({}, { get: (_, key) => (key === 'then' ? undefined : trap()), ownKeys: trap, getOwnPropertyDescriptor: trap }), /returned an invalid \w+ result: reading it threw/],
    ['a revoked Proxy', revokedProxy, /unexpected error/],
    ['an object whose getters throw', () => ({ get progress() { return trap(); }, get pools() { return trap(); }, get checkpoint() { return trap(); }, get capabilities() { return trap(); } }), /returned an invalid \w+ result: reading it threw/],
    ['an object whose toJSON throws', () => ({ toJSON: trap }), /returned an invalid \w+ result: reading it threw/],
    ['a cycle', () => { const o: Record<string, unknown> = {}; o.self = o; return o; }, /returned an invalid \w+ result: reading it threw/],
    ['a Symbol', () => Symbol('x'), /returned an invalid \w+ result: .*must/],
    ['null', () => null, /returned an invalid \w+ result: .*must/],
  ];
  for (const [what, make, message] of RETURNED) {
    test(`${what}: every call fails with DRIVER_ERROR naming the driver, backend and call`, async () => {
      const { guard } = await guarded();
      for (const name of CALLS) {
        control.answering.set(name, make);
        const err = assertClean(await rejection(call(guard, name)), 'DRIVER_ERROR', name);
        assert.match(err.message, message);
      }
    });
  }

  test('an answer is read once: what the engine gets is a plain copy, whatever the getters say later', async () => {
    const { guard } = await guarded();
    let reads = 0;
    const progress = { totalBytes: 10, copiedBytes: 10, dirtyBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 0, iteration: 1, etaSeconds: 0 };
    control.answering.set('continue', () => ({
      get progress() {
        return reads++ === 0 ? progress : { totalBytes: -1 };
      },
      phase1Done: true,
      checkpoint: { job: 'j' },
    }));
    const result = (await call(guard, 'continue')) as Record<string, unknown>;
    assert.deepEqual(result.progress, progress);
    assert.deepEqual(result.progress, progress, 'a second read saw something else');
    assert.equal(reads, 1);
    assert.ok(Object.getOwnPropertyDescriptor(result, 'progress') && 'value' in Object.getOwnPropertyDescriptor(result, 'progress')!);
  });

  test('capabilities() that throws a Proxy or returns one fails the driver\'s creation with a FerryError', async () => {
    const driver = (await createDriver({ backend: 'b1', options: {}, daemonAddress: '', log: silentLog() })) as Driver;
    for (const capabilities of [() => { throw trapProxy(); }, () => trapProxy(), () => revokedProxy()] as (() => never)[]) {
      assert.throws(
        () => new GuardedDriver('b1', { name: 'scripted', version: '1' }, { ...driver, capabilities }, DEFAULT_DEADLINES, silentLog()),
        (err: unknown) => err instanceof FerryError && err.code === 'DRIVER_ERROR' && /^driver scripted \(backend b1\) .*capabilities/.test(err.message),
      );
    }
  });
});

describe('GuardedDriver and capabilities that change', () => {
  const caps = (writable: boolean) => ({ writable, nondisruptive: true, preserveMetadata: false, preserveSnapshots: false });

  test('a new answer (a driver process restarted as another version) is what the guard reports; a later answer that throws or does not check keeps the last good one', async () => {
    const driver = (await createDriver({ backend: 'b1', options: {}, daemonAddress: '', log: silentLog() })) as Driver;
    let answer: () => unknown = () => caps(false);
    const guard = new GuardedDriver('b1', { name: 'scripted', version: '1', remote: true }, { ...driver, capabilities: () => answer() as never }, DEFAULT_DEADLINES, silentLog());
    assert.equal(guard.capabilities.writable, false);
    const restarted = caps(true);
    answer = () => restarted;
    assert.equal(guard.capabilities.writable, true);
    assert.equal(guard.capabilities, guard.capabilities, 'the same answer is checked once');
    for (const bad of [() => { throw trapProxy(); }, () => ({ writable: 'yes' }), () => revokedProxy()]) {
      answer = bad;
      assert.equal(guard.capabilities.writable, true);
    }
  });
});

describe('GuardedDriver and a driver that blocks the event loop', () => {
  beforeEach(() => control.reset());

  for (const later of [false, true]) {
    test(`a call that busy-loops past its deadline ${later ? 'after an await' : 'before its first await'} fails with DEADLINE_EXCEEDED and is logged with how long it blocked`, async () => {
      const { guard, lines } = await guarded({ continue: 200 });
      control.block('continue', 1_000, { later });
      const err = assertClean(await rejection(call(guard, 'continue')), 'DEADLINE_EXCEEDED', 'continue');
      assert.match(err.message, /did not answer continue within 200 ms: the event loop was blocked for \d+ ms during the call \(a module plugin must never block it\)/);
      const line = lines.find((l) => l.msg === 'driver call blocked the event loop; a module plugin must never block it');
      assert.ok(line, 'no log line about the blocked loop');
      assert.equal(line.call, 'continue');
      assert.equal(line.backend, 'b1');
      assert.equal(line.migration, 'mig-1');
      assert.equal(line.failed, true);
      assert.ok(typeof line.blockedMs === 'number' && line.blockedMs > 200, `blockedMs ${String(line.blockedMs)}`);
      // The next call, which does not block, is answered.
      await call(guard, 'continue');
    });
  }

  test('a call that blocks the loop but answers within its deadline succeeds, and the block is logged as a warning', async () => {
    const { guard, lines } = await guarded({ continue: 60_000 });
    control.block('continue', 300, { later: true });
    await call(guard, 'continue');
    const line = lines.find((l) => l.msg === 'driver call blocked the event loop; a module plugin must never block it');
    assert.equal(line?.call, 'continue');
    assert.equal(line?.failed, false);
    assert.equal(line?.level, 40);
  });

  test('for a driver in its own process (kind process or endpoint) the blocked loop is named as ferryd\'s, not the driver\'s', async () => {
    // The scripted driver blocks the loop here, standing in for ferryd's own work while a remote call is out.
    const { guard, lines } = await guarded({ continue: 200 }, true);
    control.block('continue', 1_000, { later: true });
    const err = assertClean(await rejection(call(guard, 'continue')), 'DEADLINE_EXCEEDED', 'continue');
    assert.match(err.message, /the event loop was blocked for \d+ ms during the call \(not by the driver, which runs in its own process: ferryd's own work held the loop\)/);
    assert.doesNotMatch(err.message, /module plugin/);
    const line = lines.find((l) => l.msg === "ferryd's event loop was blocked during a driver call (not by the driver: it runs in its own process)");
    assert.equal(line?.failed, true);
    assert.equal(line?.call, 'continue');
  });
});

describe('GuardedDriver and the shutdown signal', () => {
  beforeEach(() => control.reset());

  test('twelve calls in flight add one listener to the shutdown signal, no MaxListenersExceededWarning, and shutdown aborts every one', async (t) => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const { guard } = await guarded({ continue: 60_000 });
    const shutdown = new AbortController();
    control.hangs.add('continue');
    const calls = Array.from({ length: 12 }, (_, i) => rejection(call(guard, 'continue', shutdown.signal, `mig-${i}`)));
    await control.calls$('continue', 12);
    assert.equal(getEventListeners(shutdown.signal, 'abort').length, 1);
    // Node emits the warning on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => w.name), []);

    shutdown.abort(new FerryError('UNAVAILABLE', 'the daemon is shutting down'));
    for (const err of await Promise.all(calls)) {
      assert.match(assertClean(err, 'UNAVAILABLE', 'continue').message, /continue was abandoned: the daemon is shutting down/);
    }
    assert.equal(getEventListeners(shutdown.signal, 'abort').length, 0);
  });

  test('a call that ends removes its listener, so a thousand calls in a row leave none behind', async () => {
    const { guard } = await guarded();
    const shutdown = new AbortController();
    for (let i = 0; i < 1_000; i++) await call(guard, 'progress', shutdown.signal);
    assert.equal(getEventListeners(shutdown.signal, 'abort').length, 0);
  });

  test('a call made after shutdown began fails at once with the shutdown reason, and the driver is not called', async () => {
    const { guard } = await guarded({ continue: 60_000 });
    const shutdown = new AbortController();
    shutdown.abort(new FerryError('UNAVAILABLE', 'the daemon is shutting down'));
    control.hangs.add('continue');
    assertClean(await rejection(call(guard, 'continue', shutdown.signal)), 'UNAVAILABLE', 'continue');
    assert.equal(control.count('continue'), 0);
  });
});

describe('FerryError instanceof', () => {
  class SubError extends FerryError {}

  test('a subclass matches only its own instances; FerryError matches both', () => {
    const plain = new FerryError('NOT_FOUND', 'x');
    const sub = new SubError('NOT_FOUND', 'x');
    assert.equal(plain instanceof SubError, false);
    assert.equal(sub instanceof SubError, true);
    assert.equal(sub instanceof FerryError, true);
    assert.equal(plain instanceof FerryError, true);
    assert.equal(new Error('x') instanceof FerryError, false);
  });

  test('FerryError from another copy of the module matches FerryError of this one, and not a subclass of it', async () => {
    const copy = (await import(`../../plugins/api/errors.ts?copy=${Date.now()}-2`)) as typeof import('../../plugins/api/errors.ts');
    const foreign = new copy.FerryError('UNAVAILABLE', 'x');
    assert.equal(foreign instanceof FerryError, true);
    assert.equal(new FerryError('UNAVAILABLE', 'x') instanceof copy.FerryError, true);
    assert.equal(foreign instanceof SubError, false);
  });

  test('never throws, whatever it is asked about', () => {
    for (const value of [trapProxy(), revokedProxy(), Symbol('x'), null, undefined, 42, { get [Symbol.for('ferry.FerryError')]() { return trap(); } }]) {
      assert.equal(value instanceof FerryError, false);
      assert.equal(value instanceof SubError, false);
    }
  });
});
