"""Errors as the driver protocol wants them, and as the array sends them.

A failure is a gRPC status whose google.rpc.ErrorInfo `reason` is the stable
Ferry code (driver.proto's errors table), sent the standard way (AIP-193): a
google.rpc.Status in the `grpc-status-details-bin` trailer. The array sends
its own codes the same way, under its own domain.
"""
import grpc
from google.protobuf.message import DecodeError

# Where gRPC puts an encoded google.rpc.Status.
STATUS_DETAILS_METADATA = 'grpc-status-details-bin'
ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo'

# The ErrorInfo domain of this driver's errors.
DOMAIN = 'ferry.driver.simulator-py'

# Every Ferry code a driver may answer with, and its gRPC status. DRIVER_ERROR
# (a broken contract, here: the array and the driver disagree) goes as INTERNAL,
# which ferryd counts as DRIVER_ERROR whatever the reason says.
STATUS_OF = {
    'INVALID_ARGUMENT': grpc.StatusCode.INVALID_ARGUMENT,
    'NOT_FOUND': grpc.StatusCode.NOT_FOUND,
    'ALREADY_EXISTS': grpc.StatusCode.ALREADY_EXISTS,
    'FAILED_PRECONDITION': grpc.StatusCode.FAILED_PRECONDITION,
    'UNIMPLEMENTED': grpc.StatusCode.UNIMPLEMENTED,
    'RESOURCE_EXHAUSTED': grpc.StatusCode.RESOURCE_EXHAUSTED,
    'UNAVAILABLE': grpc.StatusCode.UNAVAILABLE,
    'DEADLINE_EXCEEDED': grpc.StatusCode.DEADLINE_EXCEEDED,
    'DRIVER_ERROR': grpc.StatusCode.INTERNAL,
}


class FerryError(Exception):
    """An expected failure with a stable Ferry code (a key of STATUS_OF); the message is for people."""

    def __init__(self, code, message):
        if code not in STATUS_OF:
            raise ValueError('unknown Ferry code %r' % (code,))
        super().__init__(message)
        self.code = code
        self.message = message


def abort(pb, context, err):
    """Ends the call with `err`'s status and its ErrorInfo. Raises, as context.abort does."""
    status = STATUS_OF[err.code]
    info = pb.rpc.ErrorInfo(reason=err.code, domain=DOMAIN)
    details = pb.rpc.Status(code=status.value[0], message=err.message)
    details.details.add(type_url=ERROR_INFO_TYPE_URL, value=info.SerializeToString())
    context.set_trailing_metadata(((STATUS_DETAILS_METADATA, details.SerializeToString()),))
    context.abort(status, err.message)


def error_info_of(pb, rpc_error):
    """The (reason, domain) of a failed call's ErrorInfo, or None if it carried none."""
    for key, value in rpc_error.trailing_metadata() or ():
        if key != STATUS_DETAILS_METADATA:
            continue
        try:
            status = pb.rpc.Status.FromString(value)
            for any_ in status.details:
                if any_.type_url == ERROR_INFO_TYPE_URL:
                    info = pb.rpc.ErrorInfo.FromString(any_.value)
                    return info.reason, info.domain
        except DecodeError:  # Not a google.rpc.Status: as if there were none.
            return None
    return None
