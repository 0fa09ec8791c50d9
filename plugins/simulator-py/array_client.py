"""The driver's connection to its array: one gRPC channel per backend (shared
by every migration), calls bounded by their own deadline and by the deadline
of the ferryd call they serve, and the translation of the array's error
codes into Ferry's.

A vendor replaces this file with the client of their own array's API; the
rest of the driver talks to it through `call`.
"""
import grpc

from errors import FerryError, error_info_of

# The ErrorInfo domain of the array's own errors (simulator.proto).
ARRAY_DOMAIN = 'ferry.simulator.v1'

# The array's error code (its ErrorInfo reason) -> Ferry's. A code not listed
# (one this driver does not know yet) is DRIVER_ERROR too: the driver and the
# array disagree.
ARRAY_CODE_MAP = {
    'NO_SUCH_OBJECT': 'NOT_FOUND',
    'NO_SPACE': 'RESOURCE_EXHAUSTED',
    'WRONG_STATE': 'FAILED_PRECONDITION',
    'OBJECT_EXISTS': 'ALREADY_EXISTS',
    'BUSY': 'UNAVAILABLE',
    'TIMED_OUT': 'DEADLINE_EXCEEDED',
    # The driver sent what the array refuses, or asked for what it does not do, or the array broke.
    'BAD_REQUEST': 'DRIVER_ERROR',
    'NOT_SUPPORTED': 'DRIVER_ERROR',
    'ARRAY_FAULT': 'DRIVER_ERROR',
}

# gRPC status -> Ferry code, when no array answered (the transport's own status). Anything else: DRIVER_ERROR.
TRANSPORT_CODE_MAP = {
    grpc.StatusCode.UNAVAILABLE: 'UNAVAILABLE',
    grpc.StatusCode.DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
}


class ArrayClient:
    """A SimulatorService client. Thread-safe: every call of the driver's pool shares the channel."""

    def __init__(self, pb, endpoint, timeout_ms):
        self.pb = pb
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        # The channel connects lazily: a backend is opened before its array need answer.
        self._channel = grpc.insecure_channel(endpoint)
        self._stub = pb.simulator_grpc.SimulatorServiceStub(self._channel)

    def call(self, method, request, context=None):
        """Calls `method`. Raises FerryError: the array's code mapped and its
        message kept; DEADLINE_EXCEEDED when our deadline or that of `context`
        (the ferryd call being served) passes, or when ferryd cancelled the
        call before it was sent. A blocking call, not a future: it saves a
        thread hand-off on every Continue, and ferryd's deadline bounds it."""
        timeout = self.timeout_ms / 1000
        if context is not None:
            if not context.is_active():
                raise FerryError('DEADLINE_EXCEEDED', '%s was not sent: the call was aborted' % method)
            remaining = context.time_remaining()
            if remaining is not None:
                timeout = min(timeout, remaining)
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise self._to_ferry_error(method, err, timeout) from None

    def close(self):
        """Closes the channel."""
        self._channel.close()

    def _to_ferry_error(self, method, err, timeout):
        status = err.code()
        if status == grpc.StatusCode.CANCELLED:
            return FerryError('DEADLINE_EXCEEDED', '%s to the array at %s was aborted (deadline or shutdown)' % (method, self.endpoint))
        details = err.details() or status.name
        info = error_info_of(self.pb, err)
        if info is None or info[1] != ARRAY_DOMAIN:
            # No array answered: the channel could not reach it, or our deadline passed.
            code = TRANSPORT_CODE_MAP.get(status, 'DRIVER_ERROR')
            if code == 'UNAVAILABLE':
                return FerryError(code, 'the array at %s is unavailable: %s' % (self.endpoint, details))
            if code == 'DEADLINE_EXCEEDED':
                return FerryError(code, '%s to the array at %s ran past its %d ms deadline' % (method, self.endpoint, round(timeout * 1000)))
            return FerryError(code, '%s to the array at %s failed with %s: %s' % (method, self.endpoint, status.name, details))
        array_code = info[0]
        code = ARRAY_CODE_MAP.get(array_code, 'DRIVER_ERROR')
        if code == 'UNAVAILABLE':
            return FerryError(code, 'the array at %s is unavailable: %s' % (self.endpoint, details))
        if code == 'DRIVER_ERROR':
            return FerryError(code, 'the array answered %s with %s: %s' % (method, array_code, details))
        return FerryError(code, details)
