"""The gRPC services the driver process serves on FERRY_DRIVER_LISTEN:
ferry.driver.v1.DriverService (each call handed to the SimulatorDriver of
its backend), ferry.driver.v1.ConformanceAdapter, and grpc.health.v1.Health.

Every handler goes through `handled`: a FerryError becomes its gRPC status
with an ErrorInfo; anything else is a bug in the driver and is answered as
DRIVER_ERROR (INTERNAL), logged with its traceback.
"""
import functools
import threading

import grpc
from google.protobuf import json_format

from errors import FerryError, abort
from simulator_driver import SimulatorDriver

# The driver API version this driver speaks (driver.proto, GetPluginInfo).
API_VERSION = 1

# The health service names answered SERVING; "" is the whole server.
HEALTH_SERVICES = ('', 'ferry.driver.v1.DriverService', 'ferry.driver.v1.ConformanceAdapter')


def handled(pb, log, method, fn):
    """`fn(request, context)` as a gRPC handler that answers every failure with a status."""
    @functools.wraps(fn)
    def handler(request, context):
        try:
            return fn(request, context)
        except FerryError as err:
            log.debug('call failed', extra={'fields': {'method': method, 'code': err.code, 'reason': err.message}})
            abort(pb, context, err)
        except Exception as err:
            log.exception('call failed: a bug in the driver', extra={'fields': {'method': method}})
            abort(pb, context, FerryError('DRIVER_ERROR', '%s failed in driver simulator-py: %s: %s' % (method, type(err).__name__, err)))
    return handler


def check_call(call):
    """The REQUIRED fields of a MigrationCall (ferryd checks them too; a hand-made call may not)."""
    if not call.backend:
        raise FerryError('INVALID_ARGUMENT', 'backend is REQUIRED')
    if not call.HasField('migration') or not call.migration.id:
        raise FerryError('INVALID_ARGUMENT', 'migration.id is REQUIRED')
    return call


class Backends:
    """The opened backends and their drivers: the one owner of that state, shared by every thread."""

    def __init__(self, pb):
        self.pb = pb
        self._lock = threading.Lock()
        self._open = {}  # name -> (options, daemon_address, driver)

    def open(self, name, options, daemon_address):
        """The driver for `name` with these options: the one already open if they are the same, else a new one."""
        with self._lock:
            current = self._open.get(name)
            if current is not None and current[:2] == (options, daemon_address):
                return current[2]
            driver = SimulatorDriver(self.pb, name, options, daemon_address)
            self._open[name] = (options, daemon_address, driver)
        # A driver replaced is not closed here: calls in flight may still use its channel, which
        # closes once the last of them lets go of it.
        return driver

    def get(self, name):
        with self._lock:
            current = self._open.get(name)
        if current is None:
            raise FerryError('FAILED_PRECONDITION', 'backend %s is not open in this driver process (OpenBackend first)' % name)
        return current[2]

    def close(self):
        with self._lock:
            drivers, self._open = [d for _, _, d in self._open.values()], {}
        for driver in drivers:
            driver.close()


def add_driver_service(server, pb, log, plugin, backends):
    """Serves DriverService for `plugin` (the parsed plugin.json) with the drivers of `backends`."""

    def get_plugin_info(request, context):
        return pb.driver.GetPluginInfoResponse(name=plugin['name'], version=plugin['version'], api_version=API_VERSION)

    def open_backend(request, context):
        if not request.backend:
            raise FerryError('INVALID_ARGUMENT', 'backend is REQUIRED')
        options = json_format.MessageToDict(request.options) if request.HasField('options') else {}
        driver = backends.open(request.backend, options, request.daemon_address)
        log.info('backend opened', extra={'fields': {'backend': request.backend, 'endpoint': driver.options.endpoint}})
        return pb.driver.OpenBackendResponse(capabilities=driver.capabilities())

    def describe(request, context):
        if not request.backend:
            raise FerryError('INVALID_ARGUMENT', 'backend is REQUIRED')
        return backends.get(request.backend).describe(context)

    def per_migration(method):
        def call(request, context):
            return method(backends.get(check_call(request).backend), request, context)
        return call

    handlers = {
        'GetPluginInfo': get_plugin_info,
        'OpenBackend': open_backend,
        'Describe': describe,
        'CheckCompatibility': per_migration(SimulatorDriver.check_compatibility),
        'Start': per_migration(SimulatorDriver.start),
        'Continue': per_migration(SimulatorDriver.continue_),
        'Complete': per_migration(SimulatorDriver.complete),
        'Cancel': per_migration(SimulatorDriver.cancel),
        'Progress': per_migration(SimulatorDriver.progress),
    }
    servicer = type('DriverService', (pb.driver_grpc.DriverServiceServicer,), {
        name: staticmethod(handled(pb, log, name, fn)) for name, fn in handlers.items()
    })()
    pb.driver_grpc.add_DriverServiceServicer_to_server(servicer, server)


def add_conformance_adapter(server, pb, log, adapter):
    """Serves ConformanceAdapter with `adapter` (a conformance_adapter.ConformanceAdapter)."""
    methods = {
        'Setup': adapter.setup,
        'CreateShare': adapter.create_share,
        'WriteShare': adapter.write_share,
        'ChecksumShare': adapter.checksum_share,
        'LocateShare': adapter.locate_share,
        'ListShares': adapter.list_shares,
        'DeleteShare': adapter.delete_share,
        'Teardown': adapter.teardown,
    }
    servicer = type('ConformanceAdapter', (pb.conformance_grpc.ConformanceAdapterServicer,), {
        name: staticmethod(handled(pb, log, name, fn)) for name, fn in methods.items()
    })()
    pb.conformance_grpc.add_ConformanceAdapterServicer_to_server(servicer, server)


class Health:
    """grpc.health.v1.Health: SERVING for HEALTH_SERVICES until `stop`, then NOT_SERVING."""

    def __init__(self, pb):
        self.pb = pb
        self._changed = threading.Condition()
        self._stopping = False

    def stop(self):
        """Says NOT_SERVING from now on, to every caller and watcher."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _status(self, service, context):
        Response = self.pb.health.HealthCheckResponse
        if service not in HEALTH_SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, 'unknown service %r' % service)
        with self._changed:
            return Response(status=Response.NOT_SERVING if self._stopping else Response.SERVING)

    def Check(self, request, context):
        return self._status(request.service, context)

    def Watch(self, request, context):
        # The status changes once, at shutdown: send it now, and again then (unless the watcher left).
        yield self._status(request.service, context)

        def wake():
            with self._changed:
                self._changed.notify_all()
        context.add_callback(wake)
        with self._changed:
            self._changed.wait_for(lambda: self._stopping or not context.is_active())
        if context.is_active():
            yield self._status(request.service, context)


def add_health(server, pb):
    """Serves grpc.health.v1.Health; returns it, to `stop` at shutdown."""
    health = type('Health', (Health, pb.health_grpc.HealthServicer), {})(pb)
    pb.health_grpc.add_HealthServicer_to_server(health, server)
    return health
