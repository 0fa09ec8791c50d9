"""Ferry's reference driver in Python, for the simulated array: a process
driver ("kind": "process" in plugin.json) speaking ferry.driver.v1.

ferryd starts it with FERRY_DRIVER_LISTEN=unix:PATH and a pipe on stdin. It
generates its gRPC stubs from the protos (stubs.py), serves DriverService,
ConformanceAdapter and grpc health on that address with a pool of threads,
and exits when stdin reaches end of file (ferryd is gone, even if it was
SIGKILLed) or on SIGTERM / SIGINT, after stopping the server. Logs are one
JSON object per line on stderr.

The driver itself is simulator_driver.py (one per backend, the twin of
plugins/simulator/index.ts); array_client.py is its connection to the array;
conformance_adapter.py is the conformance kit's window onto the array.

Environment:
  FERRY_DRIVER_LISTEN    REQUIRED. Where to serve: unix:PATH (or host:port)
  FERRY_DRIVER_THREADS   calls served at once (default 32)
  FERRY_DRIVER_LOG_LEVEL debug, info (default), warning or error
  GRPC_VERBOSITY         gRPC core's own logging, plain text on stderr; NONE
                         unless set, so that stderr stays JSON
  FERRY_PROTO_PATH, FERRY_GRPC_PROTO_PATH: where the protos are (stubs.py)
"""
import json
import os
import signal
import sys
import threading
from concurrent import futures

os.environ.setdefault('GRPC_VERBOSITY', 'NONE')  # Before grpc is imported: it reads it once.
import grpc  # noqa: E402 (Debian: python3-grpcio)

import log as logs  # noqa: E402
import service  # noqa: E402
import stubs  # noqa: E402
from conformance_adapter import ConformanceAdapter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# How long calls in flight may finish after a stop is asked for; ferryd's own grace period is longer.
STOP_GRACE_S = 2


def read_plugin():
    with open(os.path.join(HERE, 'plugin.json')) as f:
        return json.load(f)


class StopRequests:
    """What asks the driver to stop: SIGTERM, SIGINT, or end of file on stdin (ferryd, which holds its
    other end, is gone, even if it was SIGKILLed).

    The main thread waits on a pipe, not on a lock. The kernel hands a process-wide signal to any thread
    that does not block it, often one of gRPC's; Python then runs its handler only when the main thread
    next runs bytecode, which a thread blocked on a lock (Event.wait, Queue.get) never does. So the
    interpreter is told to write each signal's number to the pipe (signal.set_wakeup_fd), from whichever
    thread the signal landed on, and the stdin thread writes a 0 there. Install in the main thread,
    before any other thread starts."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # The pipe carries it; the default would kill the process.
        threading.Thread(target=self._watch_stdin, name='stdin', daemon=True).start()

    def _watch_stdin(self):
        # The raw fd, not sys.stdin: a buffered reader's lock, held by this thread, would abort the interpreter's exit.
        while os.read(0, 65536):
            pass
        os.write(self._write, b'\0')

    def wait(self):
        """Blocks until a stop is asked for; returns why."""
        first = os.read(self._read, 1)[0]
        return 'stdin closed' if first == 0 else signal.Signals(first).name


def why_unusable(address):
    """Why gRPC could not bind `address`, as far as can be told from outside (gRPC itself only says that it failed)."""
    if address.startswith('unix:'):
        folder = os.path.dirname(os.path.abspath(address[len('unix:'):]))
        if not os.path.isdir(folder):
            return 'the folder %s does not exist' % folder
        if not os.access(folder, os.W_OK | os.X_OK):
            return 'the folder %s is not writable' % folder
        return 'the path is taken by something that is not a socket, or is too long for one'
    return 'the address is malformed, or in use'


def main():
    log = logs.setup(os.environ.get('FERRY_DRIVER_LOG_LEVEL', 'INFO').upper())
    listen = os.environ.get('FERRY_DRIVER_LISTEN')
    if not listen:
        log.error('FERRY_DRIVER_LISTEN is not set: ferryd sets it to unix:PATH, the socket to serve on')
        return 2
    threads = int(os.environ.get('FERRY_DRIVER_THREADS', '32'))
    try:
        pb = stubs.generate()
    except stubs.StubError as err:
        log.error('cannot generate the gRPC stubs: %s' % err)
        return 1

    stops = StopRequests()

    plugin = read_plugin()
    backends = service.Backends(pb)
    adapter = ConformanceAdapter(pb)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix='call'))
    service.add_driver_service(server, pb, log, plugin, backends)
    service.add_conformance_adapter(server, pb, log, adapter)
    health = service.add_health(server, pb)
    try:
        server.add_insecure_port(listen)
    except RuntimeError:
        log.error('cannot listen on %s: %s' % (listen, why_unusable(listen)), extra={'fields': {'address': listen}})
        return 1
    server.start()
    log.info('serving', extra={'fields': {'plugin': plugin['name'], 'version': plugin['version'], 'address': listen, 'threads': threads}})

    log.info('stopping', extra={'fields': {'reason': stops.wait()}})
    health.stop()
    server.stop(STOP_GRACE_S).wait()
    adapter.close()
    backends.close()
    if listen.startswith('unix:') and os.path.exists(listen[len('unix:'):]):
        os.unlink(listen[len('unix:'):])
    log.info('stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
