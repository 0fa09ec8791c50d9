"""The driver's connection to its array: one gRPC channel per backend (shared
by every migration), calls that end when ferryd cancels the call they serve
and have a deadline of their own, and the translation of the array's error
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
        message kept; DEADLINE_EXCEEDED when `context` (the ferryd call being
        served) ends first (the array call is cancelled, so nothing keeps
        running on our side) or our own deadline passes."""
        future = getattr(self._stub, method).future(request, timeout=self.timeout_ms / 1000)
        # Runs when ferryd's call ends: cancelled or past its deadline, or answered (then a no-op).
        if context is not None and not context.add_callback(future.cancel):
            future.cancel()
        try:
            return future.result()
        except grpc.FutureCancelledError:
            raise FerryError('DEADLINE_EXCEEDED', '%s to the array at %s was aborted (deadline or shutdown)' % (method, self.endpoint)) from None
        except grpc.RpcError as err:
            raise self._to_ferry_error(method, err) from None

    def close(self):
        """Closes the channel."""
        self._channel.close()

    def _to_ferry_error(self, method, err):
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
                return FerryError(code, '%s to the array at %s ran past its %d ms deadline' % (method, self.endpoint, self.timeout_ms))
            return FerryError(code, '%s to the array at %s failed with %s: %s' % (method, self.endpoint, status.name, details))
        array_code = info[0]
        code = ARRAY_CODE_MAP.get(array_code, 'DRIVER_ERROR')
        if code == 'UNAVAILABLE':
            return FerryError(code, 'the array at %s is unavailable: %s' % (self.endpoint, details))
        if code == 'DRIVER_ERROR':
            return FerryError(code, 'the array answered %s with %s: %s' % (method, array_code, details))
        return FerryError(code, details)
