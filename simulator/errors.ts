/**
 * The array's own errors, as a vendor's array has them: a stable code of
 * its own (the compatibility promise; the message is free text), each code
 * answered with one gRPC status. On the wire the code is the reason of a
 * google.rpc.ErrorInfo in domain ARRAY_ERROR_DOMAIN (see service.ts); the
 * array knows nothing of Ferry's driver API or its error codes. A driver
 * translates these codes into its host's (plugins/simulator/client.ts).
 */
import * as grpc from '@grpc/grpc-js';

/** The ErrorInfo domain of the array's errors. */
export const ARRAY_ERROR_DOMAIN = 'ferry.simulator.v1';

/** The array's error codes, and the gRPC status each is answered with. */
export const ARRAY_ERROR_CODES = {
  /** A request field is missing or malformed; the message names it. */
  BAD_REQUEST: grpc.status.INVALID_ARGUMENT,
  /** No share, job, workload, backend or pool of that name. */
  NO_SUCH_OBJECT: grpc.status.NOT_FOUND,
  /** An object of that id exists with different fields. */
  OBJECT_EXISTS: grpc.status.ALREADY_EXISTS,
  /** The object is not in a state that allows the call (a job still copying, a read-only share). */
  WRONG_STATE: grpc.status.FAILED_PRECONDITION,
  /** The destination is on another array, which this one has no link to (a copy job cannot reach it). */
  OTHER_ARRAY: grpc.status.FAILED_PRECONDITION,
  /** Bytes sent to the array do not match the CRC-32C sent with them: nothing of them was written. */
  BAD_CHECKSUM: grpc.status.DATA_LOSS,
  /** The array does not do that. */
  NOT_SUPPORTED: grpc.status.UNIMPLEMENTED,
  /** A pool lacks room. */
  NO_SPACE: grpc.status.RESOURCE_EXHAUSTED,
  /** Busy for now (shutting down, a share frozen by a cutover): retry later. */
  BUSY: grpc.status.UNAVAILABLE,
  /** The array gave up waiting on something of its own. */
  TIMED_OUT: grpc.status.DEADLINE_EXCEEDED,
  /** A failure inside the array. */
  ARRAY_FAULT: grpc.status.INTERNAL,
} as const satisfies Record<string, grpc.status>;

/** One of the array's error codes. */
export type ArrayErrorCode = keyof typeof ARRAY_ERROR_CODES;

// The first code listed for a status is its general one (WRONG_STATE, not OTHER_ARRAY, for FAILED_PRECONDITION).
const BY_STATUS = new Map<grpc.status, ArrayErrorCode>();
for (const [code, status] of Object.entries(ARRAY_ERROR_CODES) as Array<[ArrayErrorCode, grpc.status]>) if (!BY_STATUS.has(status)) BY_STATUS.set(status, code);

/** The array's general code for gRPC status `status`, if there is one (the first listed for it). */
export function arrayCodeForStatus(status: grpc.status): ArrayErrorCode | undefined {
  return BY_STATUS.get(status);
}

/** Thrown by the array's parts for every expected failure; anything else thrown is a bug (a bare INTERNAL). */
export class ArrayError extends Error {
  /** The stable code. */
  readonly code: ArrayErrorCode;

  constructor(code: ArrayErrorCode, message: string) {
    super(message);
    this.name = 'ArrayError';
    this.code = code;
  }

  /** The gRPC status this error is answered with. */
  get status(): grpc.status {
    return ARRAY_ERROR_CODES[this.code];
  }
}
