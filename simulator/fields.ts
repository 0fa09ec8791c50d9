/**
 * Field checks of SimulatorService requests (as proto-loader gives them:
 * camelCase fields, 64-bit integers as numbers, enums as names): each names
 * the field in its error, as simulator.proto promises.
 */
import { ArrayError } from './errors.ts';

/** A request as proto-loader decodes it. */
export type Req = Record<string, unknown>;
/** A google.protobuf.Timestamp. */
export type Timestamp = { seconds: number; nanos: number } | null;

/**
 * A string field, at most MAX_STRING characters. Every identifier a caller
 * sends goes through here, so no message ever echoes more than that: a
 * long id is refused by its length, never quoted.
 */
export function str(req: Req, field: string): string {
  const v = req[camel(field)];
  return typeof v === 'string' ? maxLength(v, field) : '';
}

/** A string field that must not be empty. */
export function required(req: Req, field: string): string {
  const v = str(req, field);
  if (!v) throw new ArrayError('BAD_REQUEST', `${field} is required`);
  return v;
}

/** A number field (0 when absent). */
export function num(req: Req, field: string): number {
  const v = req[camel(field)];
  return typeof v === 'number' ? v : Number(v ?? 0);
}

/** A bool field. */
export function bool(req: Req, field: string): boolean {
  return req[camel(field)] === true;
}

/** Refuses a string over `max` characters, naming the field. */
export function maxLength(value: string, field: string, max = 128): string {
  if (value.length > max) throw new ArrayError('BAD_REQUEST', `${field} is ${value.length} characters; at most ${max}`);
  return value;
}

/** An enum field: its value without the prefix, the default for 0, INVALID_ARGUMENT for anything unknown. */
export function enumValue<T extends string>(req: Req, field: string, prefix: string, allowed: readonly T[], fallback: T): T {
  const raw = req[camel(field)];
  if (raw === undefined || raw === `${prefix}UNSPECIFIED` || raw === 0) return fallback;
  const name = typeof raw === 'string' ? raw.slice(prefix.length) : '';
  if (typeof raw === 'string' && raw.startsWith(prefix) && (allowed as readonly string[]).includes(name)) return name as T;
  throw new ArrayError('BAD_REQUEST', `${field} has an unknown value ${String(raw)}`);
}

/** A proto field name as proto-loader spells it. */
export function camel(field: string): string {
  return field.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** A Timestamp of ms since the epoch; null for 0. */
export function ts(ms: number): Timestamp {
  return ms > 0 ? { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 } : null;
}

