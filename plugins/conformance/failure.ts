/**
 * How a check ends other than by passing: a CheckFailure (the driver or the
 * engine broke the contract; it names the call that broke) or a CheckSkipped
 * (the check does not apply: a capability the driver does not claim, or an
 * optional adapter feature it lacks).
 */
import { FerryError } from '../api/index.ts';

/** Thrown by a check when the contract was broken. `call` names the driver or API call that broke, when one did. */
export class CheckFailure extends Error {
  /** The call that broke, e.g. "start (call 2 of 3, new driver instance)". */
  readonly call?: string;

  constructor(message: string, call?: string) {
    super(message);
    this.name = 'CheckFailure';
    if (call !== undefined) this.call = call;
  }
}

/** Thrown by a check that does not apply; the message says why. */
export class CheckSkipped extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'CheckSkipped';
  }
}

/** Fails the check. */
export function fail(message: string, call?: string): never {
  throw new CheckFailure(message, call);
}

/** Fails the check unless `condition` holds. */
export function expect(condition: unknown, message: string, call?: string): asserts condition {
  if (!condition) fail(message, call);
}

/** Skips the check. */
export function skip(reason: string): never {
  throw new CheckSkipped(reason);
}

/** "CODE: message" for anything thrown: a FerryError, a FerryCallError from the daemon, or anything else. */
export function describeError(err: unknown): string {
  if (err instanceof FerryError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && code.length > 0 ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** The stable code of a thrown value, if it has one. */
export function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
