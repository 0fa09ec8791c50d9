"""The simulator's ConformanceAdapter (proto/ferry/driver/v1/conformance.proto),
the Python twin of plugins/simulator/conformance-adapter.ts: it starts an
array that outlives ferryd (the kit SIGKILLs and restarts the daemon and its
driver processes), and makes and inspects test shares through the array's
own API, never through Ferry.

By default Setup starts the array as its own process, as a vendor's adapter
starts its array's simulator: `node bin/ferry-sim.mjs serve` on 127.0.0.1:0
in a temp dir, with small blocks and chunks so that a few-MiB share has many
of each, and a 1 MiB pool for the RESOURCE_EXHAUSTED check; it learns the
bound address from the array's "listening" log line, and Teardown (or this
process's exit) stops it. With `endpoint` it uses a running array instead
(and names no small pool unless `smallPool` is given).

Config (SetupRequest.config, from `ferry-conformance --config FILE`, all optional):
  endpoint       a running array's address; default: start one
  driverOptions  extra options for both backends' drivers (e.g. {"snapshots": true})
  smallPool      a pool of backend "beta" smaller than the test share
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections import deque

from google.protobuf import json_format, struct_pb2

from array_client import ArrayClient
from errors import FerryError

KiB = 1024
MiB = 1024 * KiB

# The array's command; a vendor's adapter starts its own array's simulator.
FERRY_SIM = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'bin', 'ferry-sim.mjs'))

# How long the array may take to start listening, and to stop after SIGTERM before it is killed.
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10

# The array Setup starts (ferry-sim's --config file): two backends, a roomy pool each, and a tiny one.
CONFORMANCE_ARRAY = {
    'blockSizeBytes': 4 * KiB,
    'chunkSizeBytes': 64 * KiB,
    'workers': 2,
    'backends': [
        {'name': 'alpha', 'pools': [{'name': 'gold', 'capacityBytes': 1024 * MiB}]},
        {'name': 'beta', 'pools': [{'name': 'bronze', 'capacityBytes': 1024 * MiB}, {'name': 'tiny', 'capacityBytes': 1 * MiB}]},
    ],
}

# Job states in which a job holds a destination that is not a share yet.
ACTIVE_JOB = {'JOB_STATE_COPYING', 'JOB_STATE_SYNCING', 'JOB_STATE_CUTTING_OVER'}


class ArrayProcess:
    """A running `ferry-sim serve`, started on 127.0.0.1:0 with `data_dir` and
    `config_file`. The constructor returns once it logs the address it listens
    on, and raises FerryError, with what it printed on stderr, if it exits or
    stays silent first."""

    def __init__(self, data_dir, config_file):
        node = shutil.which('node')
        if node is None:
            raise FerryError('FAILED_PRECONDITION', 'cannot start ferry-sim (%s): no `node` on PATH' % FERRY_SIM)
        self.child = subprocess.Popen(
            [node, FERRY_SIM, 'serve', '--listen', '127.0.0.1:0', '--data-dir', data_dir, '--config', config_file],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr = deque(maxlen=50)
        self._listening = threading.Event()
        self.address = None
        # Both pipes are read to their end, so the array never blocks on a full one.
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._listening.wait(START_TIMEOUT_S) or self.address is None:
            exited = self.child.poll()
            self.stop()
            what = 'did not log "listening" within %d s' % START_TIMEOUT_S if exited is None else 'exited (%s) before listening' % exited
            raise FerryError('FAILED_PRECONDITION', 'ferry-sim %s: %s' % (what, b''.join(self._stderr).decode(errors='replace').strip()))

    def _read_stdout(self):
        for line in self.child.stdout:
            if self.address is None:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # Not a log line.
                if isinstance(entry, dict) and entry.get('msg') == 'listening' and isinstance(entry.get('address'), str):
                    self.address = entry['address']
                    self._listening.set()
        self._listening.set()  # Exited: Setup stops waiting.

    def _read_stderr(self):
        for line in self.child.stderr:
            self._stderr.append(line)

    def stop(self):
        """SIGTERM (the array closes its jobs and files), SIGKILL if it has not exited within STOP_TIMEOUT_S."""
        if self.child.poll() is not None:
            return
        self.child.terminate()
        try:
            self.child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


class ConformanceAdapter:
    """The servicer of ferry.driver.v1.ConformanceAdapter. The kit calls it one call at a time."""

    def __init__(self, pb):
        self.pb = pb
        self._lock = threading.Lock()
        self._array = None
        self._data_dir = None
        self._client = None

    def setup(self, request, context):
        config = json_format.MessageToDict(request.config) if request.HasField('config') else {}
        endpoint, small_pool = config.get('endpoint'), config.get('smallPool')
        driver_options = config.get('driverOptions', {})
        if not isinstance(driver_options, dict):
            raise FerryError('INVALID_ARGUMENT', 'config.driverOptions must be an object')
        with self._lock:
            self._stop()
            if not endpoint:
                self._data_dir = tempfile.mkdtemp(prefix='ferry-conformance-array-')
                config_file = os.path.join(self._data_dir, 'array.json')
                with open(config_file, 'w') as f:
                    json.dump(CONFORMANCE_ARRAY, f)
                self._array = ArrayProcess(os.path.join(self._data_dir, 'array'), config_file)
                endpoint = self._array.address
                small_pool = small_pool or 'tiny'
            self._client = ArrayClient(self.pb, endpoint, 30_000)
        options = struct_pb2.Struct()
        options.update(dict(driver_options, endpoint=endpoint))
        backends = [self.pb.conformance.AdapterBackend(name=name, options=options) for name in ('alpha', 'beta')]
        return self.pb.conformance.SetupResponse(backends=backends, source_pool='gold', destination_pool='bronze', small_pool=small_pool or '')

    def create_share(self, request, context):
        share = self._call('CreateShare', self.pb.simulator.CreateShareRequest(backend=request.backend, pool=request.pool, size_bytes=request.size_bytes))
        return self.pb.conformance.CreateShareResponse(share_id=share.share_id)

    def write_share(self, request, context):
        self._call('WriteShare', self.pb.simulator.WriteShareRequest(share_id=request.share_id, offset=request.offset, data=request.data))
        return self.pb.conformance.WriteShareResponse()

    def checksum_share(self, request, context):
        res = self._call('ChecksumShare', self.pb.simulator.ChecksumShareRequest(share_id=request.share_id))
        return self.pb.conformance.ChecksumShareResponse(sha256=res.sha256)

    def locate_share(self, request, context):
        share = self._share(request.share_id)
        if share is None:
            raise FerryError('NOT_FOUND', 'the array has no share %s' % request.share_id)
        return self.pb.conformance.LocateShareResponse(backend=share.backend, pool=share.pool)

    def list_shares(self, request, context):
        """The shares living on the backend, and "job:<id>" for each job whose destination there is still in flight (the array's ListShares does not show those)."""
        sim = self.pb.simulator
        shares = self._call('ListShares', sim.ListSharesRequest(backend=request.backend)).shares
        jobs = self._call('ListJobs', sim.ListJobsRequest()).jobs
        in_flight = ['job:' + j.job_id for j in jobs if sim.JobState.Name(j.state) in ACTIVE_JOB and j.dest.backend == request.backend]
        return self.pb.conformance.ListSharesResponse(names=[s.share_id for s in shares] + in_flight)

    def delete_share(self, request, context):
        sim = self.pb.simulator
        share = self._share(request.share_id)
        if share is not None:
            # A job left behind (say, by a driver whose cancel does not cancel) holds the share: cancel it first.
            if share.migrating and share.job_id:
                self._call('CancelJob', sim.CancelJobRequest(job_id=share.job_id))
            try:
                self._call('DeleteShare', sim.DeleteShareRequest(share_id=request.share_id))
            except FerryError as err:
                if err.code != 'NOT_FOUND':
                    raise
        return self.pb.conformance.DeleteShareResponse()

    def teardown(self, request, context):
        with self._lock:
            self._stop()
        return self.pb.conformance.TeardownResponse()

    def close(self):
        """Stops what Setup started, if Teardown did not: the array must not outlive this process."""
        with self._lock:
            self._stop()

    def _stop(self):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._array is not None:
            self._array.stop()
            self._array = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _share(self, share_id):
        try:
            return self._call('GetShare', self.pb.simulator.GetShareRequest(share_id=share_id))
        except FerryError as err:
            if err.code == 'NOT_FOUND':
                return None
            raise

    def _call(self, method, request):
        # The kit's calls are not bounded by its deadline here: the adapter's own 30 s is.
        client = self._client
        if client is None:
            raise FerryError('FAILED_PRECONDITION', 'the adapter is not set up (call Setup first)')
        return client.call(method, request)
