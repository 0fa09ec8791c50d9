/**
 * What ferryd's errors look like on the wire: a FerryError keeps its message
 * and goes out with its gRPC code, its stable code as the ErrorInfo reason
 * (domain `ferry.v1`, the error's details as metadata) and in the
 * `ferry-error-code` trailer. Anything else is a bare INTERNAL (lib/rpc.ts).
 */
import { ERROR_CODE_METADATA, FERRY_ERROR_DOMAIN } from '../lib/api.ts';
import type { ErrorStatus } from '../lib/rpc.ts';
import { ErrorCodes, FerryError } from '../plugins/api/index.ts';

/** ferryd's StatusMapper. INTERNAL and DRIVER_ERROR are logged with their stack. */
export function ferryStatus(err: unknown): ErrorStatus | undefined {
  if (!(err instanceof FerryError)) return undefined;
  return {
    code: ErrorCodes[err.code],
    message: err.message,
    reason: err.code,
    domain: FERRY_ERROR_DOMAIN,
    info: err.details,
    trailers: { [ERROR_CODE_METADATA]: err.code },
    logged: err.code === 'INTERNAL' || err.code === 'DRIVER_ERROR',
  };
}
