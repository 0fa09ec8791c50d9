"""The gRPC stubs the driver needs, generated from the protos at start.

Nothing generated is kept: grpc_tools.protoc writes the Python modules into
a temp dir, they are imported, and the dir is removed at once (an imported
module no longer needs its file), so not even a SIGKILL leaves it behind.

Where the protos are (each overridable by an environment variable):
  FERRY_PROTO_PATH       Ferry's protos: the driver protocol and the array's
                         API (default: ../../proto from this folder)
  FERRY_GRPC_PROTO_PATH  gRPC's own protos, for grpc/health/v1/health.proto
                         (default: /usr/share/grpc-proto, Debian's grpc-proto)
google.rpc.Status and ErrorInfo come from rpc_status.proto beside this file;
the well-known google/protobuf protos come with grpc_tools.
"""
import importlib
import os
import shutil
import sys
import tempfile
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))


class StubError(Exception):
    """The protos could not be found or compiled; the message says which and where."""


def _include_dirs():
    """Each include dir, keyed by what names it: an environment variable, or HERE for this folder."""
    return {
        'FERRY_PROTO_PATH': os.environ.get('FERRY_PROTO_PATH') or os.path.normpath(os.path.join(HERE, '..', '..', 'proto')),
        # health.proto is compiled from its own folder, as a top-level module: under its
        # real path, grpc/health/v1, it would be hidden by grpcio's own `grpc` package.
        'FERRY_GRPC_PROTO_PATH': os.path.join(os.environ.get('FERRY_GRPC_PROTO_PATH') or '/usr/share/grpc-proto', 'grpc', 'health', 'v1'),
        'HERE': HERE,
    }


# (include dir, proto file under it, whether it declares a service)
_SOURCES = [
    ('FERRY_PROTO_PATH', 'ferry/driver/v1/driver.proto', True),
    ('FERRY_PROTO_PATH', 'ferry/driver/v1/conformance.proto', True),
    ('FERRY_PROTO_PATH', 'ferry/simulator/v1/simulator.proto', True),
    ('FERRY_GRPC_PROTO_PATH', 'health.proto', True),
    ('HERE', 'rpc_status.proto', False),
]

# The modules to import, by the attribute they get.
_MODULES = {
    'driver': 'ferry.driver.v1.driver_pb2',
    'driver_grpc': 'ferry.driver.v1.driver_pb2_grpc',
    'conformance': 'ferry.driver.v1.conformance_pb2',
    'conformance_grpc': 'ferry.driver.v1.conformance_pb2_grpc',
    'simulator': 'ferry.simulator.v1.simulator_pb2',
    'simulator_grpc': 'ferry.simulator.v1.simulator_pb2_grpc',
    'health': 'health_pb2',
    'health_grpc': 'health_pb2_grpc',
    'rpc': 'rpc_status_pb2',
}


def _protoc(include, out, proto, service):
    from grpc_tools import protoc  # Debian: python3-grpc-tools
    well_known = os.path.join(os.path.dirname(protoc.__file__), '_proto')
    args = ['grpc_tools.protoc', '-I' + include, '-I' + well_known, '--python_out=' + out]
    if service:
        args.append('--grpc_python_out=' + out)
    if protoc.main(args + [proto]) != 0:
        raise StubError('grpc_tools.protoc failed on %s in %s (its errors are on stderr above)' % (proto, include))


def generate():
    """Compiles and imports every stub; returns the modules as attributes (driver, driver_grpc, simulator, rpc, ...)."""
    dirs = _include_dirs()
    for var, proto, _ in _SOURCES:
        path = os.path.join(dirs[var], proto)
        if not os.path.isfile(path):
            hint = '' if var == 'HERE' else ' (set %s to the folder that holds it)' % var
            raise StubError('%s not found%s' % (path, hint))
    out = tempfile.mkdtemp(prefix='ferry-simulator-py-stubs-')
    try:
        for var, proto, service in _SOURCES:
            _protoc(dirs[var], out, proto, service)
        sys.path.insert(0, out)
        try:
            return SimpleNamespace(**{name: importlib.import_module(module) for name, module in _MODULES.items()})
        finally:
            sys.path.remove(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
