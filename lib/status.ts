/**
 * Errors the standard way (AIP-193): a `google.rpc.Status` carrying a
 * `google.rpc.ErrorInfo`, sent in the `grpc-status-details-bin` trailer, so
 * that any gRPC client reads the stable reason without knowing Ferry's own
 * trailer. The messages are encoded from googleapis' own status.proto and
 * error_details.proto (shipped by google-proto-files).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

/** The trailer gRPC reserves for an encoded google.rpc.Status. */
export const STATUS_DETAILS_METADATA = 'grpc-status-details-bin';

/** The type URL of google.rpc.ErrorInfo inside a google.protobuf.Any. */
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

/** What an ErrorInfo says: why (a stable UPPER_SNAKE reason), whose reason it is, and details. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** A decoded google.rpc.Status with its ErrorInfo, if it carried one. */
export interface StatusDetails {
  code: number;
  message: string;
  errorInfo?: ErrorInfo;
}

const googleapis = join(dirname(createRequire(import.meta.url).resolve('google-proto-files/package.json')));
const root = protobuf.loadSync([join(googleapis, 'google/rpc/status.proto'), join(googleapis, 'google/rpc/error_details.proto')]);
const Status = root.lookupType('google.rpc.Status');
const ErrorInfoType = root.lookupType('google.rpc.ErrorInfo');

/** Encodes a status with one ErrorInfo detail, for the `grpc-status-details-bin` trailer. */
export function encodeStatusDetails(code: number, message: string, info: ErrorInfo): Buffer {
  const value = ErrorInfoType.encode(ErrorInfoType.fromObject(info)).finish();
  return Buffer.from(Status.encode(Status.fromObject({ code, message, details: [{ type_url: ERROR_INFO_TYPE_URL, value }] })).finish());
}

/** Decodes the `grpc-status-details-bin` trailer; undefined if it is not a google.rpc.Status. */
export function decodeStatusDetails(bytes: Uint8Array): StatusDetails | undefined {
  let status: { code?: number; message?: string; details?: { type_url?: string; value?: Uint8Array }[] };
  try {
    status = Status.toObject(Status.decode(bytes)) as typeof status;
  } catch {
    return undefined;
  }
  const out: StatusDetails = { code: status.code ?? 0, message: status.message ?? '' };
  const any = status.details?.find((d) => d.type_url === ERROR_INFO_TYPE_URL);
  if (any?.value) {
    const info = ErrorInfoType.toObject(ErrorInfoType.decode(any.value)) as Partial<ErrorInfo>;
    out.errorInfo = { reason: info.reason ?? '', domain: info.domain ?? '', metadata: info.metadata ?? {} };
  }
  return out;
}
