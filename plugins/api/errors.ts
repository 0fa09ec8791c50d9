/**
 * The one error type that crosses the driver boundary.
 *
 * Drivers throw `FerryError` with a stable upper-case `code`; the daemon's
 * guard turns anything else a driver throws into `DRIVER_ERROR`. The code is
 * the compatibility promise, the message is free text for humans.
 */

/** Every error code Ferry uses, with the gRPC status it maps to. */
export const ErrorCodes = {
  /** A caller's field is missing or malformed. */
  INVALID_ARGUMENT: 3,
  /** The named share, backend, pool or migration does not exist. */
  NOT_FOUND: 5,
  /** The thing already exists (an active migration, a reused request id). */
  ALREADY_EXISTS: 6,
  /** The call is not allowed in the current state. */
  FAILED_PRECONDITION: 9,
  /** The driver lacks the capability altogether. */
  UNIMPLEMENTED: 12,
  /** A pool lacks room. */
  RESOURCE_EXHAUSTED: 8,
  /** The array or backend is unreachable or not serving; retry later. */
  UNAVAILABLE: 14,
  /** A driver call ran past its deadline; retry later. */
  DEADLINE_EXCEEDED: 4,
  /** The driver broke its contract (threw something unknown, returned garbage). */
  DRIVER_ERROR: 13,
  /** Bytes did not match their CRC-32C on the host data path. */
  DATA_LOSS: 15,
  /** Phase 1 made no progress for longer than the stall timeout. */
  STALLED: 13,
  /** Something inside the daemon failed. Never used for a caller's mistake. */
  INTERNAL: 13,
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof ErrorCodes;

/** Codes after which the same call may succeed if retried later. */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['UNAVAILABLE', 'DEADLINE_EXCEEDED']);

const BRAND = Symbol.for('ferry.FerryError');

/**
 * Thrown by drivers, the engine and the server for every expected failure.
 * `instanceof FerryError` works across duplicate copies of this module (a
 * plugin may bundle its own), because it checks a global brand, not the
 * prototype.
 */
export class FerryError extends Error {
  /** The stable code. */
  readonly code: ErrorCode;
  /** Set when the error came from somewhere else (a gRPC call, a thrown value). */
  override readonly cause?: unknown;
  /**
   * Machine-readable facts about the failure (e.g. `migration`, `state`),
   * sent to clients as google.rpc.ErrorInfo metadata. Values are short strings.
   */
  readonly details: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, string> }) {
    super(message);
    this.name = 'FerryError';
    this.code = code;
    this.details = { ...options?.details };
    if (options?.cause !== undefined) this.cause = options.cause;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * `x instanceof FerryError` is true for a FerryError from any copy of this
   * module; `x instanceof Sub`, for a subclass, only for instances of Sub.
   * Never throws and runs no code of `value` (no getter, no Proxy trap that
   * does not throw), so it is safe on whatever a driver throws.
   */
  static override [Symbol.hasInstance](this: unknown, value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    try {
      // A subclass is matched by its prototype, as usual; the brand stands for FerryError itself.
      if (this !== FerryError) return typeof this === 'function' && Function.prototype[Symbol.hasInstance].call(this, value);
      return Object.getOwnPropertyDescriptor(value, BRAND)?.value === true;
    } catch {
      // A Proxy whose traps throw, or a revoked one.
      return false;
    }
  }

  /** Whether the same call may succeed if retried. */
  get retryable(): boolean {
    return RETRYABLE_CODES.has(this.code);
  }
}

/** True if `code` is one of Ferry's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ErrorCodes, code);
}
