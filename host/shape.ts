/**
 * The pieces the guard's result checkers are made of: a check that throws
 * ShapeError saying exactly what was wrong with a driver's answer, and the
 * type tests they use.
 */

/** Thrown by the result checkers: what exactly was wrong with a driver's answer. */
export class ShapeError extends Error {}

/** Throws ShapeError(`what`) unless `condition` holds. */
export function need(condition: boolean, what: string): asserts condition {
  if (!condition) throw new ShapeError(what);
}

/** A finite number >= 0. */
export const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** A whole number >= 0 that a double holds exactly. */
export const isWhole = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** A plain object (not null, not an array). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
