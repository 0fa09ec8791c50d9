"""A Ferry driver for YOUR ARRAY, from the template (plugin kind "process").

Every DriverService call and every ConformanceAdapter call answers
UNIMPLEMENTED ("template: implement Start") until you fill it in.

Read docs/writing-a-driver.md first, and proto/ferry/driver/v1/driver.proto
(the contract) and conformance.proto (the kit's adapter). Each method below
names the section of the guide that specifies it.

    npx ferry-conformance init ./my-driver --kind process   this folder, with your name
    ...fill in the methods below...
    npx ferry-conformance --plugin ./my-driver             run the suite

How the process lives (driver.proto, "What ferryd asks of a driver process"):
- listen where FERRY_DRIVER_LISTEN says (unix:PATH) and serve grpc health
  "ferry.driver.v1.DriverService" SERVING once calls are answered;
- exit when stdin reaches end of file (ferryd holds the other end), and on
  SIGTERM; ferryd sends SIGKILL after its grace period;
- log to stdout or stderr, one line each (a JSON object per line is kept as fields).

The rules that matter most (guide, "Checkpoints and repeats"):
- every call returns fast: submit work to the array, never wait for it;
- any call may be a repeat of one whose answer was lost, after a restart of
  this process: use the migration id as the array job's idempotency key;
- what you need on the next call goes in the checkpoint (bytes), not in memory;
- answer expected failures with the gRPC status the driver.proto errors table names.

Needs Debian's python3-grpcio and python3-grpc-tools (run with /usr/bin/python3).
The Python stubs are generated at start from the protos, found under
FERRY_PROTO_PATH (default: the Ferry checkout this folder was made from);
nothing generated is kept.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc
import grpc_tools
from grpc_tools import protoc

PLUGIN_NAME = "template"
DEFAULT_PROTO_PATH = "@FERRY_PROTO_PATH@"
HEALTH_NAME = "ferry.driver.v1.DriverService"

# grpc.health.v1 as gRPC defines it (grpc/health/v1/health.proto), so that
# the driver needs no other package to serve health. Compiled as
# driver_health.proto: Python's own `grpc` package leaves no room for grpc.health.
HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
"""


def log(msg, **fields):
    """One JSON line on stdout: ferryd keeps it in its own log, with the plugin and backend."""
    print(json.dumps({"msg": msg, **fields}), flush=True)


def generate_stubs(workdir):
    """Compiles the driver, adapter and health protos into workdir and makes them importable."""
    proto_path = os.environ.get("FERRY_PROTO_PATH", DEFAULT_PROTO_PATH)
    if not os.path.isfile(os.path.join(proto_path, "ferry/driver/v1/driver.proto")):
        sys.exit(f"{PLUGIN_NAME}: no ferry/driver/v1/driver.proto under {proto_path}: set FERRY_PROTO_PATH to the proto/ folder of a Ferry checkout")
    health_dir = os.path.join(workdir, "include")
    os.makedirs(health_dir)
    with open(os.path.join(health_dir, "driver_health.proto"), "w") as f:
        f.write(HEALTH_PROTO)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    out = os.path.join(workdir, "stubs")
    os.makedirs(out)
    args = ["grpc_tools.protoc", f"-I{proto_path}", f"-I{health_dir}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
            "ferry/driver/v1/driver.proto", "ferry/driver/v1/conformance.proto", "driver_health.proto"]
    if protoc.main(args) != 0:
        sys.exit(f"{PLUGIN_NAME}: protoc could not compile the protos under {proto_path}")
    sys.path.insert(0, out)


def unimplemented(context, call):
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{PLUGIN_NAME}: implement {call}")


def make_servicers():
    """The three services; imported after generate_stubs."""
    from ferry.driver.v1 import conformance_pb2_grpc, driver_pb2, driver_pb2_grpc  # noqa: F401
    import driver_health_pb2 as health_pb2
    import driver_health_pb2_grpc as health_pb2_grpc

    class Driver(driver_pb2_grpc.DriverServiceServicer):
        """ferry.driver.v1.DriverService: one backend or many, each named in every call."""

        def GetPluginInfo(self, request, context):
            # Guide, "The process kind": answer name, version and api_version 1, as plugin.json says.
            unimplemented(context, "GetPluginInfo")

        def OpenBackend(self, request, context):
            # Guide, "OpenBackend": check request.options for request.backend, remember them, answer the capabilities.
            unimplemented(context, "OpenBackend")

        def Describe(self, request, context):
            # Guide, "describe": the backend's pools; also the health probe.
            unimplemented(context, "Describe")

        def CheckCompatibility(self, request, context):
            # Guide, "checkCompatibility": read-only; what can be honoured for request.migration.
            unimplemented(context, "CheckCompatibility")

        def Start(self, request, context):
            # Guide, "start": submit the job keyed by request.migration.id; return at once with a checkpoint.
            unimplemented(context, "Start")

        def Continue(self, request, context):
            # Guide, "continue": progress and phase1_done from the job named in request.checkpoint.
            unimplemented(context, "Continue")

        def Complete(self, request, context):
            # Guide, "complete": the cutover, resumable from request.checkpoint.
            unimplemented(context, "Complete")

        def Cancel(self, request, context):
            # Guide, "cancel": idempotent, also with an empty checkpoint (find the job by the migration id).
            unimplemented(context, "Cancel")

        def Progress(self, request, context):
            # Guide, "progress": cheap, read-only.
            unimplemented(context, "Progress")

    class Adapter(conformance_pb2_grpc.ConformanceAdapterServicer):
        """ferry.driver.v1.ConformanceAdapter: the kit's window onto your array (guide, "The adapter")."""

        def Setup(self, request, context):
            unimplemented(context, "Setup")

        def CreateShare(self, request, context):
            unimplemented(context, "CreateShare")

        def WriteShare(self, request, context):
            unimplemented(context, "WriteShare")

        def ChecksumShare(self, request, context):
            unimplemented(context, "ChecksumShare")

        def LocateShare(self, request, context):
            unimplemented(context, "LocateShare")

        def ListShares(self, request, context):
            unimplemented(context, "ListShares")

        def DeleteShare(self, request, context):
            unimplemented(context, "DeleteShare")

        def Teardown(self, request, context):
            unimplemented(context, "Teardown")

    class Health(health_pb2_grpc.HealthServicer):
        """Serving as soon as the server runs; a driver that needs to warm up reports NOT_SERVING until it has."""

        SERVED = ("", HEALTH_NAME)

        def _status(self, service):
            ok = service in self.SERVED
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)

        def Check(self, request, context):
            if request.service not in self.SERVED:
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service}")
            return self._status(request.service)

        def Watch(self, request, context):
            yield self._status(request.service)
            done = threading.Event()
            context.add_callback(done.set)
            done.wait()

    def add(server):
        driver_pb2_grpc.add_DriverServiceServicer_to_server(Driver(), server)
        conformance_pb2_grpc.add_ConformanceAdapterServicer_to_server(Adapter(), server)
        health_pb2_grpc.add_HealthServicer_to_server(Health(), server)

    return add


class StopRequests:
    """What asks the driver to stop: SIGTERM, or end of file on stdin (ferryd holds its other end, so
    it is gone, even if it was SIGKILLed).

    Wait on a pipe, never on a lock: the kernel may hand SIGTERM to one of gRPC's threads, and Python
    runs the handler only when the main thread next runs bytecode, which a thread blocked on a lock
    (threading.Event.wait) never does. signal.set_wakeup_fd makes the interpreter write the signal's
    number to the pipe from whichever thread got it; the stdin thread writes a 0. Create it in the main
    thread, before any other thread starts."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write)
        signal.signal(signal.SIGTERM, lambda *_: None)  # The pipe carries it; the default would kill us.
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def _watch_stdin(self):
        # The raw fd, not sys.stdin: a buffered reader's lock, held by this thread, would abort exit.
        while os.read(0, 65536):
            pass
        os.write(self._write, b"\0")

    def wait(self):
        """Blocks until a stop is asked for; returns why."""
        first = os.read(self._read, 1)[0]
        return "stdin closed" if first == 0 else signal.Signals(first).name


def main():
    listen = os.environ.get("FERRY_DRIVER_LISTEN")
    if not listen:
        sys.exit(f"{PLUGIN_NAME}: FERRY_DRIVER_LISTEN is not set; ferryd (or ferry-conformance) starts this driver and sets it")
    workdir = tempfile.mkdtemp(prefix=f"ferry-driver-{PLUGIN_NAME}-")
    try:
        generate_stubs(workdir)
        stops = StopRequests()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        make_servicers()(server)
        if server.add_insecure_port(listen) == 0:
            sys.exit(f"{PLUGIN_NAME}: cannot listen on {listen}")
        server.start()
        log("driver serving", address=listen, plugin=PLUGIN_NAME)

        log("driver stopping", reason=stops.wait(), plugin=PLUGIN_NAME)
        server.stop(grace=2).wait()
        log("driver stopped", plugin=PLUGIN_NAME)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
