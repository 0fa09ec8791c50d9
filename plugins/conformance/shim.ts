/**
 * Runs inside the ferryd child the kit starts: a pass-through wrapper around
 * the vendor's driver. Around each start, complete and cancel it tells the
 * kit's control server (control.ts) that the call begins and how it ended,
 * and waits for the answer, which is immediate unless a check holds the
 * call. It changes no argument and no result, and wraps nothing else: the
 * host data path's halves (`dataSource`, `dataDestination`) are passed
 * through as they are, read from the driver each time they are asked for,
 * and so is `watchChanges`, when the driver has it.
 *
 * The kit writes a plugin folder whose module is, in effect:
 *   export const createDriver = wrapFactory(vendor.createDriver, controlUrl);
 * so ferryd loads it through its own loader like any plugin.
 */
import type { Driver, DriverFactory, MigrationCall } from '../api/index.ts';
import type { HookEvent, HookedCall, HookPhase } from './control.ts';

const HOOKED: readonly HookedCall[] = ['start', 'complete', 'cancel'];
const METHODS = ['capabilities', 'describe', 'checkCompatibility', 'start', 'continue', 'complete', 'cancel', 'progress', 'watchChanges', 'close'] as const;
/** Optional members passed through untouched; getters, so that the wrapper has one exactly when (and as long as) the driver has it. */
const MEMBERS = ['dataSource', 'dataDestination'] as const;

/** Wraps a plugin's factory; returns `factory` unchanged if it is not a function (so the loader reports it as usual). */
export function wrapFactory(factory: unknown, controlUrl: string): unknown {
  if (typeof factory !== 'function') return factory;
  const wrapped: DriverFactory = async (ctx) => {
    const driver = await (factory as DriverFactory)(ctx);
    if (typeof driver !== 'object' || driver === null) return driver;
    return wrapDriver(driver, ctx.backend, controlUrl);
  };
  return wrapped;
}

function wrapDriver(driver: Driver, backend: string, url: string): Driver {
  const out: Record<string, unknown> = {};
  const source = driver as unknown as Record<string, unknown>;
  for (const name of METHODS) {
    const value = source[name];
    if (typeof value !== 'function') {
      if (value !== undefined) out[name] = value;
      continue;
    }
    const fn = (value as (...args: unknown[]) => unknown).bind(driver);
    out[name] = (HOOKED as readonly string[]).includes(name) ? hooked(name as HookedCall, fn, backend, url) : fn;
  }
  for (const name of MEMBERS) Object.defineProperty(out, name, { get: () => source[name], enumerable: true });
  return out as unknown as Driver;
}

function hooked(call: HookedCall, fn: (...args: unknown[]) => unknown, backend: string, url: string) {
  return async (arg: MigrationCall) => {
    const base = { call, backend, migration: arg.migration.id, share: arg.migration.source.shareId };
    await tell(url, 'before', base);
    let result: unknown;
    try {
      result = await fn(arg);
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      await tell(url, 'after', { ...base, ok: false, code: typeof e?.code === 'string' ? e.code : undefined, message: String(e?.message ?? err) });
      throw err;
    }
    await tell(url, 'after', { ...base, ok: true, result });
    return result;
  };
}

/** Posts an event and waits for the answer; if the kit is gone, goes on. */
async function tell(url: string, phase: HookPhase, event: Omit<HookEvent, 'phase'>): Promise<void> {
  try {
    const res = await fetch(`${url}/${phase}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...event, phase }) });
    await res.arrayBuffer();
  } catch {
    // The kit is not listening (it stopped, or this daemon outlived it): behave as a plain driver.
  }
}
