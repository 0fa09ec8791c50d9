/**
 * Reading what a driver threw or returned without trusting it.
 *
 * A driver may throw or return anything: a Proxy whose every trap throws, a
 * revoked Proxy, an object whose `message` getter or `toString` throws, a
 * Symbol, `null`, a message of megabytes. The guard must turn each into a
 * clean FerryError without throwing itself, so nothing here lets an
 * exception out, nothing converts a value to a string implicitly, and every
 * string copied out is bounded. Thrown values are read through data
 * properties only, so no driver code (getter, trap, toString) runs while the
 * guard reports a failure.
 */
import { types } from 'node:util';
import { FerryError, isErrorCode, type ErrorCode } from '../plugins/api/index.ts';

/** How much of a driver's text is copied into a message or a log line. */
export const TEXT_PREFIX_CHARS = 200;
/** How much of a thrown error's stack is logged. */
const STACK_PREFIX_CHARS = 2_000;
/** At most this many `details` entries of a driver's FerryError are kept. */
const MAX_DETAILS = 16;

/** A prefix of `text`, on one line, with a note of how long the whole was when it was cut. */
export function bounded(text: string, max = TEXT_PREFIX_CHARS): string {
  let head = text.length > max ? text.slice(0, max) : text;
  // Cutting between the halves of a surrogate pair would leave half a character.
  if (head.length < text.length && /[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  head = head.replace(/[\r\n\t]+/g, ' ');
  return head.length < text.length ? `${head}… (${text.length} characters in all)` : head;
}

/** The value of a data property found on `value` or its prototypes; never runs a getter or a trap. */
function dataProperty(value: object, key: string): unknown {
  let target: object | null = value;
  try {
    for (let depth = 0; target !== null && depth < 8; depth++) {
      if (types.isProxy(target)) return undefined;
      const descriptor = Object.getOwnPropertyDescriptor(target, key);
      if (descriptor) return 'value' in descriptor ? descriptor.value : undefined;
      target = Object.getPrototypeOf(target) as object | null;
    }
  } catch {
    // Unreachable for ordinary objects; kept so that nothing escapes.
  }
  return undefined;
}

const stringProperty = (value: object, key: string): string | undefined => {
  const v = dataProperty(value, key);
  return typeof v === 'string' ? v : undefined;
};

/** What a driver threw, as the guard logs it: plain, bounded strings only. */
export interface ThrownSummary {
  /** What kind of value it was ("an Error", "a Proxy", "a symbol", "null", ...). */
  thrown: string;
  /** Its message (or the value itself for a primitive), bounded. */
  message: string;
  name?: string;
  code?: string;
  stack?: string;
}

/** Describes any thrown value for the log. Never throws, never runs the value's code. */
export function summarizeThrown(value: unknown): ThrownSummary {
  if (value === null || value === undefined) return { thrown: String(value), message: String(value) };
  switch (typeof value) {
    case 'string':
      return { thrown: 'a string', message: bounded(value) };
    case 'number':
    case 'boolean':
    case 'bigint':
      return { thrown: `a ${typeof value}`, message: String(value) };
    case 'symbol':
      return { thrown: 'a symbol', message: 'a symbol' };
    case 'function':
      return { thrown: 'a function', message: 'a function' };
  }
  const object = value as object;
  if (types.isProxy(object)) return { thrown: 'a Proxy', message: 'a Proxy (not inspected)' };
  const message = stringProperty(object, 'message');
  const name = stringProperty(object, 'name');
  const code = dataProperty(object, 'code');
  const stack = stringProperty(object, 'stack');
  return {
    thrown: types.isNativeError(object) ? 'an Error' : 'an object',
    message: message === undefined ? 'its message could not be read' : bounded(message),
    ...(name !== undefined && { name: bounded(name, 64) }),
    ...((typeof code === 'string' || typeof code === 'number') && { code: bounded(String(code), 64) }),
    ...(stack !== undefined && { stack: bounded(stack, STACK_PREFIX_CHARS) }),
  };
}

/** The parts of a genuine FerryError the guard passes on. */
export interface DriverFailure {
  code: ErrorCode;
  message: string;
  details: Record<string, string>;
}

/**
 * The code, message and details of a genuine FerryError (from any copy of
 * the driver API) with a code Ferry knows; undefined for anything else,
 * including a Proxy that claims to be one. Never throws.
 */
export function readFerryError(value: unknown): DriverFailure | undefined {
  if (typeof value !== 'object' || value === null || types.isProxy(value) || !(value instanceof FerryError)) return undefined;
  const code = dataProperty(value, 'code');
  const message = stringProperty(value, 'message');
  if (!isErrorCode(code) || message === undefined) return undefined;
  return { code, message: bounded(message), details: readDetails(dataProperty(value, 'details')) };
}

function readDetails(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof value !== 'object' || value === null || types.isProxy(value)) return out;
  try {
    for (const key of Object.keys(value).slice(0, MAX_DETAILS)) {
      const v = dataProperty(value, key);
      if (typeof v === 'string') out[bounded(key, 64)] = bounded(v);
    }
  } catch {
    // Keys that cannot be listed: no details.
  }
  return out;
}

/** A driver's answer that could not be read as plain JSON data. */
export class UnreadableResult extends Error {}

/**
 * A plain copy of a driver's answer, read exactly once (JSON, as it will be
 * persisted), so that the checks and the engine see the same values and no
 * getter or Proxy of the driver's runs after the check. Throws
 * UnreadableResult, with a summary of what reading it threw.
 */
export function plainCopy(value: unknown): unknown {
  if (value === undefined) return undefined;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new UnreadableResult(summarizeThrown(err).message);
  }
  return text === undefined ? undefined : (JSON.parse(text) as unknown);
}
