"""The driver for one backend of Ferry's simulated array: the Python twin of
plugins/simulator/index.ts, call for call. A vendor copies this folder,
replaces array_client.py with their array's client and keeps the shape of
each call.

The array does the work (copy, dirty tracking, cutover); the driver maps
Ferry's asynchronous contract onto the array's job API:

  Start     -> StartJob   (job id = migration id: the array deduplicates retries)
  Continue  -> GetJob     (progress, phase-1 flag, a poll hint)
  Complete  -> CutoverJob (bounded wait; joins a running cutover on retry)
  Cancel    -> CancelJob  (idempotent even for a job the array never saw)
  Progress  -> GetJob

The driver keeps no state of its own beyond the channel: everything it needs
after a restart (of ferryd or of this process) is in the array, keyed by the
migration id, or in the small checkpoint ferryd persists for it: JSON bytes,
{"jobId": ..., "cutoverAttempt": n}.

Options (the backend's `options` in ferryd's config):
  endpoint       the array's gRPC address; default: ferryd's own address,
                 where the embedded array is served
  snapshots      false (default): preserve_snapshots is not supported;
                 true: supported; "within-backend": claimed, but only
                 possible between pools of one backend
  callTimeoutMs  deadline of each call to the array (default 5000)
"""
import json

from array_client import ArrayClient
from errors import FerryError


class Options:
    """The driver's options, checked."""

    def __init__(self, backend, options, daemon_address):
        endpoint = options.get('endpoint', daemon_address)
        snapshots = options.get('snapshots', False)
        call_timeout_ms = options.get('callTimeoutMs', 5000)
        if not isinstance(endpoint, str) or endpoint == '':
            raise FerryError('INVALID_ARGUMENT', 'backend %s: options.endpoint must be a gRPC address' % backend)
        if snapshots not in (True, False, 'within-backend'):
            raise FerryError('INVALID_ARGUMENT', 'backend %s: options.snapshots must be true, false or "within-backend"' % backend)
        if isinstance(call_timeout_ms, bool) or not isinstance(call_timeout_ms, (int, float)) or not call_timeout_ms >= 100:
            raise FerryError('INVALID_ARGUMENT', 'backend %s: options.callTimeoutMs must be a number of ms, at least 100' % backend)
        self.endpoint = endpoint
        self.snapshots = snapshots
        self.call_timeout_ms = int(call_timeout_ms)


def read_checkpoint(call):
    """The checkpoint ferryd sent back, as a dict; {} before the first call returned one."""
    if not call.checkpoint:
        return {}
    try:
        cp = json.loads(call.checkpoint)
    except ValueError as err:
        raise FerryError('INVALID_ARGUMENT', 'migration %s: the checkpoint is not JSON (%s); this driver writes {"jobId": ...}' % (call.migration.id, err)) from None
    if not isinstance(cp, dict):
        raise FerryError('INVALID_ARGUMENT', 'migration %s: the checkpoint is not a JSON object; this driver writes {"jobId": ...}' % call.migration.id)
    return cp


def job_id_of(call, cp=None):
    """The job id from the checkpoint (`cp`, if already read); before Start ever returned, the migration id (which is what Start uses)."""
    job_id = (read_checkpoint(call) if cp is None else cp).get('jobId')
    return job_id if isinstance(job_id, str) else call.migration.id


def checkpoint(job_id, cutover_attempt=None):
    cp = {'jobId': job_id} if cutover_attempt is None else {'jobId': job_id, 'cutoverAttempt': cutover_attempt}
    return json.dumps(cp, separators=(',', ':')).encode()


def next_poll_ms(job):
    """How soon to call Continue again. Copying: half the time the array needs
    for what is left (bytes to copy over the measured throughput), between 10
    and 100 ms (20 ms before the first measurement), so ferryd notices phase 1
    done within tens of ms without calling the array more than 10 times a
    second on a long copy. Syncing: every 500 ms is enough to report progress
    and notice a failure."""
    if job.phase1_done:
        return 500
    p = job.progress
    # No throughput measured yet (the copy just began): a small share may already be done by the next look.
    if not job.HasField('progress') or p.throughput_bytes_per_sec <= 0:
        return 20
    left_ms = (p.total_bytes - min(p.copied_bytes, p.total_bytes) + p.dirty_bytes) / p.throughput_bytes_per_sec * 1000
    return min(100, max(10, round(left_ms / 2)))


class SimulatorDriver:
    """The simulator's driver. One instance per opened backend; thread-safe (it only reads its fields)."""

    def __init__(self, pb, backend, options, daemon_address):
        self.pb = pb
        self.backend = backend
        self.options = Options(backend, options, daemon_address)
        self.array = ArrayClient(pb, self.options.endpoint, self.options.call_timeout_ms)

    def capabilities(self):
        return self.pb.driver.Capabilities(writable=True, nondisruptive=True, preserve_metadata=True, preserve_snapshots=self.options.snapshots is not False)

    def describe(self, context):
        backend = self._array_backend(self.backend, context)
        if backend is None:
            raise FerryError('UNAVAILABLE', 'the array at %s has no backend %s' % (self.options.endpoint, self.backend))
        pools = [self.pb.driver.Pool(name=p.name, capacity_bytes=p.capacity_bytes, free_bytes=p.free_bytes) for p in backend.pools]
        return self.pb.driver.DescribeResponse(pools=pools)

    def check_compatibility(self, call, context):
        m, sim = call.migration, self.pb.simulator
        # The share must exist on this backend: NOT_FOUND otherwise (the contract's "unknown share").
        try:
            share = self.array.call('GetShare', sim.GetShareRequest(share_id=m.share_id), context)
        except FerryError as err:
            # The array knows no backend with the id; the migration names one, so the message does too.
            if err.code == 'NOT_FOUND':
                raise FerryError('NOT_FOUND', 'share %s not found on backend %s' % (m.share_id, m.source_backend)) from err
            raise
        if share.backend != m.source_backend:
            raise FerryError('NOT_FOUND', 'share %s is not on backend %s (it lives on %s)' % (share.share_id, m.source_backend, share.backend))
        reasons = []
        dest = self._array_backend(m.destination_backend, context)
        destination_free_bytes = 0
        if dest is None:
            # Another plugin's backend: this array cannot copy there.
            reasons.append('destination backend %s is not on this array (%s)' % (m.destination_backend, self.options.endpoint))
        else:
            pool = next((p for p in dest.pools if p.name == m.destination_pool), None)
            if pool is None:
                names = ', '.join(p.name for p in dest.pools) or 'no pools'
                raise FerryError('NOT_FOUND', 'pool %s not found on backend %s (it has %s)' % (m.destination_pool, m.destination_backend, names))
            destination_free_bytes = pool.free_bytes
        if share.backend == m.destination_backend and share.pool == m.destination_pool:
            reasons.append('share %s already lives in %s#%s' % (share.share_id, m.destination_backend, m.destination_pool))
        # A job with this migration's id is a retry of ours, not a conflict.
        if share.migrating and share.job_id != m.id:
            reasons.append('share %s is already migrating (array job %s)' % (share.share_id, share.job_id))
        capabilities = self.capabilities()
        capabilities.preserve_snapshots = self.options.snapshots is True or (self.options.snapshots == 'within-backend' and m.destination_backend == share.backend)
        return self.pb.driver.CheckCompatibilityResponse(
            capabilities=capabilities, reasons=reasons, share_size_bytes=share.size_bytes, destination_free_bytes=destination_free_bytes)

    def start(self, call, context):
        m, sim = call.migration, self.pb.simulator
        if m.preserve_snapshots and self.options.snapshots is False:
            raise FerryError('UNIMPLEMENTED', 'backend %s does not preserve snapshots' % self.backend)
        force = m.cutover_action == self.pb.driver.CUTOVER_ACTION_FORCE
        # The migration id is the job id, so a retried start (lost reply, restart) finds the same job.
        job = self.array.call('StartJob', sim.StartJobRequest(
            job_id=m.id,
            share_id=m.share_id,
            dest_backend=m.destination_backend,
            dest_pool=m.destination_pool,
            writable=m.writable,
            nondisruptive=m.nondisruptive,
            preserve_metadata=m.preserve_metadata,
            preserve_snapshots=m.preserve_snapshots,
            new_share_type=m.new_share_type,
            max_bandwidth_bytes_per_sec=m.max_bandwidth_bytes_per_sec,
            max_downtime_ms=m.max_downtime_ms,
            cutover_action=sim.CUTOVER_ACTION_FORCE if force else sim.CUTOVER_ACTION_ABORT,
        ), context)
        # A cancel that reached the array before this start did wins: the array refuses to revive the job.
        if self._state(job) == 'JOB_STATE_CANCELLED':
            raise FerryError('FAILED_PRECONDITION', 'array job %s was cancelled before it started' % m.id)
        return self.pb.driver.StartResponse(checkpoint=checkpoint(job.job_id))

    def continue_(self, call, context):
        job_id = job_id_of(call)
        job = self._job(job_id, context)
        self._throw_if_ended(job)
        return self.pb.driver.ContinueResponse(
            progress=self._progress(job), phase1_done=job.phase1_done, next_poll_ms=next_poll_ms(job), checkpoint=checkpoint(job_id))

    def complete(self, call, context):
        cp = read_checkpoint(call)
        job_id = job_id_of(call, cp)
        started = cp.get('cutoverAttempt')
        if isinstance(started, int):
            # A repeat of a call that started attempt `started`: if that attempt aborted, report it rather than start another.
            aborted = self._abort_of(self._job(job_id, context), started)
            if aborted is not None:
                return aborted
        # CutoverJob starts a cutover on a syncing job, joins a running one, and returns a finished one as it is.
        # Waiting at most about half our deadline leaves time to answer IN_PROGRESS instead of timing out.
        wait_ms = max(50, self.options.call_timeout_ms // 2)
        job = self.array.call('CutoverJob', self.pb.simulator.CutoverJobRequest(job_id=job_id, wait_ms=wait_ms), context)
        self._throw_if_ended(job)
        Response = self.pb.driver.CompleteResponse
        if self._state(job) == 'JOB_STATE_DONE':
            # Figures made up here would hide an array that breaks its contract: say so instead.
            if not job.HasField('cutover'):
                raise FerryError('DRIVER_ERROR', 'array job %s is DONE but the array reported no cutover figures (simulator.proto promises them for a DONE job)' % job_id)
            c = job.cutover
            cutover = self.pb.driver.CutoverMeasurements(freeze_ms=c.freeze_ms, final_delta_bytes=c.final_delta_bytes, verified_bytes=c.verified_bytes)
            return Response(status=Response.STATUS_DONE, cutover=cutover, checkpoint=checkpoint(job_id))
        aborted = self._abort_of(job, job.cutover_attempts)
        if aborted is not None:
            return aborted
        return Response(status=Response.STATUS_IN_PROGRESS, next_poll_ms=100, checkpoint=checkpoint(job_id, job.cutover_attempts))

    def cancel(self, call, context):
        job_id = job_id_of(call)
        # Idempotent on the array, also for a job it never saw (it remembers the id as cancelled).
        job = self.array.call('CancelJob', self.pb.simulator.CancelJobRequest(job_id=job_id), context)
        done = self._state(job) in ('JOB_STATE_CANCELLED', 'JOB_STATE_FAILED')
        return self.pb.driver.CancelResponse(done=done, next_poll_ms=0 if done else 100, checkpoint=checkpoint(job_id))

    def progress(self, call, context):
        try:
            job = self._job(job_id_of(call), context)
        except FerryError as err:
            # Before start reached the array there is no job, and no progress: zeros are the truth.
            if err.code == 'NOT_FOUND':
                return self.pb.driver.ProgressResponse(progress=self.pb.driver.Progress())
            raise
        return self.pb.driver.ProgressResponse(progress=self._progress(job))

    def close(self):
        self.array.close()

    def _state(self, job):
        """The job's state by name, as simulator.proto spells it."""
        return self.pb.simulator.JobState.Name(job.state)

    def _throw_if_ended(self, job):
        """A job that ended without us is an error for ferryd: FAILED carries the
        array's reason (DRIVER_ERROR), CANCELLED means someone cancelled it on the
        array directly (FAILED_PRECONDITION)."""
        state = self._state(job)
        if state == 'JOB_STATE_FAILED':
            raise FerryError('DRIVER_ERROR', 'array job %s failed: %s' % (job.job_id, job.error.message or 'no reason given'))
        if state == 'JOB_STATE_CANCELLED':
            raise FerryError('FAILED_PRECONDITION', 'array job %s was cancelled on the array' % job.job_id)

    def _abort_of(self, job, attempt):
        """The ABORTED answer if cutover attempt `attempt` of `job` rolled back, else None."""
        if self._state(job) != 'JOB_STATE_SYNCING' or attempt == 0 or job.last_abort_attempt != attempt:
            return None
        Response = self.pb.driver.CompleteResponse
        return Response(status=Response.STATUS_ABORTED, reason=job.last_abort_reason, checkpoint=checkpoint(job.job_id))

    def _progress(self, job):
        p = job.progress
        return self.pb.driver.Progress(
            total_bytes=p.total_bytes,
            copied_bytes=min(p.copied_bytes, p.total_bytes),
            dirty_bytes=p.dirty_bytes,
            dirty_rate_bytes_per_sec=p.dirty_rate_bytes_per_sec,
            throughput_bytes_per_sec=p.throughput_bytes_per_sec,
            iteration=getattr(p, 'pass'),  # `pass` is a Python keyword
            eta_seconds=0 if job.phase1_done else p.eta_seconds,
            warning=p.warning,
        )

    def _job(self, job_id, context):
        return self.array.call('GetJob', self.pb.simulator.GetJobRequest(job_id=job_id), context)

    def _array_backend(self, name, context):
        backends = self.array.call('ListBackends', self.pb.simulator.ListBackendsRequest(), context).backends
        return next((b for b in backends if b.name == name), None)
