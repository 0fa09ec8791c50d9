"""A ferry.v1 client in Python, from the proto alone.

Uses nothing but grpcio and the stubs that grpc_tools.protoc generated from
proto/ferry/v1/migration.proto (no reflection, no Ferry code). It lists the
backends, checks that completing a migration before phase 1 is done is
refused with FAILED_PRECONDITION (and Ferry's error code trailer), cancels
that migration, then runs a migration through StartMigration,
WatchMigration and CompleteMigration to SUCCESS.

With --cacert (and --cert with --key for mutual TLS) it speaks TLS, through
grpc.ssl_channel_credentials; with --token (or FERRY_TOKEN) every call
carries "authorization: Bearer <token>" metadata, with or without TLS, as
the `ferry` CLI's flags of the same names do.

Prints one "ok: ..." line per check and "PASS" at the end; a refused or failed
call is one "error: CODE: message" line on stderr and exit 1; any other
failure is an exception and a non-zero exit.

usage: migrate.py --address HOST:PORT --stubs DIR --share BACKEND/SHARE
                  --slow-share BACKEND/SHARE --destination BACKEND#POOL
                  [--cacert FILE] [--cert FILE --key FILE] [--token TOKEN]
"""

import argparse
import collections
import os
import sys
import uuid

import grpc

CALL_TIMEOUT_S = 10
WATCH_TIMEOUT_S = 60


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds "authorization: Bearer <token>" to the metadata of every call, unary and streaming.

    Metadata rather than grpc.access_token_call_credentials: call credentials
    are sent over TLS only, and a token must also work on a plaintext loopback.
    """

    def __init__(self, token):
        self._pair = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = list(details.metadata or ()) + [self._pair]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


def read_file(parser, flag, path):
    """A PEM file's bytes; a file that cannot be read is a usage error naming the flag (exit 2)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        parser.error(f"{flag} {path}: cannot be read: {err.strerror}")


def open_channel(parser, args):
    """A TLS channel when any of --cacert, --cert, --key is given, else a plaintext one; with the token's interceptor."""
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together: a client certificate needs its private key")
    if args.token == "":
        parser.error("the token (--token or FERRY_TOKEN) is empty")
    if args.cacert or args.cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_file(parser, "--cacert", args.cacert) if args.cacert else None,
            private_key=read_file(parser, "--key", args.key) if args.key else None,
            certificate_chain=read_file(parser, "--cert", args.cert) if args.cert else None,
        )
        channel = grpc.secure_channel(args.address, credentials)
    else:
        channel = grpc.insecure_channel(args.address)
    return grpc.intercept_channel(channel, BearerToken(args.token)) if args.token is not None else channel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--stubs", required=True, help="where protoc wrote ferry/v1/migration_pb2*.py")
    parser.add_argument("--share", required=True, help="the share to migrate, backend/share_id")
    parser.add_argument("--slow-share", required=True, help="a share for the refused early complete")
    parser.add_argument("--destination", required=True)
    parser.add_argument("--cacert", help="PEM CA certificate that signed ferryd's certificate; turns on TLS")
    parser.add_argument("--cert", help="PEM client certificate for mutual TLS (with --key)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--token", default=os.environ.get("FERRY_TOKEN"), help="bearer token sent with every call (default: $FERRY_TOKEN, which keeps it out of ps)")
    args = parser.parse_args()
    try:
        run(args, open_channel(parser, args))
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)


def run(args, channel):
    """The checks, on `channel`; closes it."""
    sys.path.insert(0, args.stubs)
    from ferry.v1 import migration_pb2 as pb  # noqa: E402 (generated at test time)
    from ferry.v1 import migration_pb2_grpc as pb_grpc  # noqa: E402

    def state_name(value):
        return pb.MigrationState.Name(value)

    def share_ref(text):
        backend, share_id = text.split("/", 1)
        return pb.ShareRef(backend=backend, share_id=share_id)

    def watch_until(stub, migration_id, wanted):
        """Follows WatchMigration until the migration is in `wanted` or terminal; returns that value."""
        terminal = {pb.MIGRATION_STATE_SUCCESS, pb.MIGRATION_STATE_CANCELLED, pb.MIGRATION_STATE_ERROR}
        seen = []
        for m in stub.WatchMigration(pb.WatchMigrationRequest(id=migration_id), timeout=WATCH_TIMEOUT_S):
            if not seen or seen[-1] != m.state:
                seen.append(m.state)
            if m.state == wanted or m.state in terminal:
                return m, [state_name(s) for s in seen]
        raise AssertionError(f"the watch of {migration_id} ended before {state_name(wanted)}; states seen: {seen}")

    with channel:
        stub = pb_grpc.MigrationServiceStub(channel)

        # ListBackends.
        backends = stub.ListBackends(pb.ListBackendsRequest(), timeout=CALL_TIMEOUT_S).backends
        names = [b.name for b in backends]
        dest_backend = args.destination.split("@")[-1].split("#")[0]
        assert dest_backend in names, f"{dest_backend} not in {names}"
        assert all(b.health == pb.BACKEND_HEALTH_SERVING for b in backends), [pb.BackendHealth.Name(b.health) for b in backends]
        print(f"ok: ListBackends: {', '.join(f'{b.name} ({len(b.pools)} pools, {b.driver_name})' for b in backends)}")

        # An early complete is refused with FAILED_PRECONDITION; cancel undoes the start.
        slow = stub.StartMigration(
            pb.StartMigrationRequest(share=share_ref(args.slow_share), destination=args.destination, max_bandwidth_bytes_per_sec=1024),
            timeout=CALL_TIMEOUT_S,
        )
        try:
            stub.CompleteMigration(pb.CompleteMigrationRequest(id=slow.id), timeout=CALL_TIMEOUT_S)
            raise AssertionError("CompleteMigration before phase 1 was accepted")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, f"{err.code()}: {err.details()}"
            trailer = dict(err.trailing_metadata() or ()).get("ferry-error-code")
            assert trailer == "FAILED_PRECONDITION", f"ferry-error-code trailer: {trailer!r}"
            print(f"ok: early CompleteMigration refused: {err.code().name} (trailer {trailer}): {err.details()}")
        cancelling = stub.CancelMigration(pb.CancelMigrationRequest(id=slow.id), timeout=CALL_TIMEOUT_S)
        assert cancelling.state in (pb.MIGRATION_STATE_CANCELLING, pb.MIGRATION_STATE_CANCELLED), state_name(cancelling.state)
        cancelled, _ = watch_until(stub, slow.id, pb.MIGRATION_STATE_CANCELLED)
        assert cancelled.state == pb.MIGRATION_STATE_CANCELLED, state_name(cancelled.state)
        print(f"ok: CancelMigration: {slow.id} CANCELLED")

        # Unknown migration: NOT_FOUND.
        try:
            stub.GetMigration(pb.GetMigrationRequest(id="mig-0000000000000000-00000000"), timeout=CALL_TIMEOUT_S)
            raise AssertionError("GetMigration of an unknown id succeeded")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, f"{err.code()}: {err.details()}"
            print(f"ok: unknown id: {err.code().name}")

        # The two-phase migration: start, watch to PHASE1_DONE, complete, watch to SUCCESS.
        request_id = f"python-interop-{uuid.uuid4()}"
        started = stub.StartMigration(
            pb.StartMigrationRequest(share=share_ref(args.share), destination=args.destination, writable=True, request_id=request_id),
            timeout=CALL_TIMEOUT_S,
        )
        assert started.state == pb.MIGRATION_STATE_STARTING, state_name(started.state)
        again = stub.StartMigration(
            pb.StartMigrationRequest(share=share_ref(args.share), destination=args.destination, writable=True, request_id=request_id),
            timeout=CALL_TIMEOUT_S,
        )
        assert again.id == started.id, "a repeated StartMigration with the same request_id made a second migration"
        print(f"ok: StartMigration: {started.id} {state_name(started.state)} (repeat with the same request_id: same id)")

        phase1, seen = watch_until(stub, started.id, pb.MIGRATION_STATE_PHASE1_DONE)
        assert phase1.state == pb.MIGRATION_STATE_PHASE1_DONE, f"{state_name(phase1.state)}: {phase1.error.code} {phase1.error.message}"
        assert phase1.progress.percent == 100, phase1.progress.percent
        assert phase1.progress.copied_bytes == phase1.progress.total_bytes > 0
        assert phase1.HasField("phase1_done_at")
        print(f"ok: WatchMigration: {' -> '.join(seen)}, {phase1.progress.total_bytes} bytes")

        completing = stub.CompleteMigration(pb.CompleteMigrationRequest(id=started.id), timeout=CALL_TIMEOUT_S)
        assert completing.state in (pb.MIGRATION_STATE_COMPLETING, pb.MIGRATION_STATE_SUCCESS), state_name(completing.state)
        print(f"ok: CompleteMigration: {state_name(completing.state)}")

        done, seen = watch_until(stub, started.id, pb.MIGRATION_STATE_SUCCESS)
        assert done.state == pb.MIGRATION_STATE_SUCCESS, f"{state_name(done.state)}: {done.error.code} {done.error.message}"
        assert done.HasField("cutover") and done.cutover.freeze_ms > 0
        assert done.finished_at.ToDatetime() >= done.created_at.ToDatetime()
        print(f"ok: SUCCESS after {' -> '.join(seen)}; cutover froze writes for {done.cutover.freeze_ms:.1f} ms")

        ids, token = [], ""
        while True:
            page = stub.ListMigrations(pb.ListMigrationsRequest(state=pb.MIGRATION_STATE_SUCCESS, page_size=100, page_token=token), timeout=CALL_TIMEOUT_S)
            ids += [m.id for m in page.migrations]
            token = page.next_page_token
            if not token:
                break
        assert started.id in ids and slow.id not in ids, ids
        print("ok: ListMigrations(state=SUCCESS) lists it, and not the cancelled one")

    print("PASS")


if __name__ == "__main__":
    main()
