#!/usr/bin/python3
"""A grpcurl-like client that knows no Ferry proto: everything it knows about
a server comes from that server's reflection service.

    reflect.py [--v1alpha] ADDRESS list [SERVICE]
    reflect.py [--v1alpha] ADDRESS describe [SYMBOL]
    reflect.py [--v1alpha] ADDRESS call SERVICE/METHOD [-d JSON] [--until PATH=VALUE]
                                                       [--max-time S] [--emit-defaults]
                                                       [--protoset-out FILE]

It exists because grpcurl is not packaged for Debian, and because a test that
uses stubs generated from our own .proto files never asks reflection for a
descriptor. It fails where grpcurl fails: every FileDescriptorProto the server
sends goes, dependencies first, into a fresh, strict descriptor pool (protobuf's
C++ or upb implementation), and a file the pool refuses is an error, never
worked around.

Output: `call` prints each response message as one JSON line (lowerCamelCase
names, as grpcurl prints them); `describe` prints the descriptor as proto
source with the leading comments the server sent in source_code_info, as
grpcurl does. A failed call prints grpcurl's "ERROR:" block on stderr: the
code (by its canonical name, NOT_FOUND, where grpcurl prints Go's NotFound),
the message, and the google.rpc.Status details from grpc-status-details-bin
(google.rpc.ErrorInfo decoded; other types as base64).

Exit codes, as grpcurl's: 0 ok; 1 for a failure other than the call's status
(connection, reflection, a descriptor the pool refuses, bad JSON, a stream
that ended before --until matched); 2 for bad usage; 64 + the gRPC status code
for a call that failed (e.g. 69 for NOT_FOUND, 73 for FAILED_PRECONDITION).
"""
import argparse
import base64
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile

import grpc
import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.internal import api_implementation

from reflect_describe import describe  # beside this file

GRPC_PROTO = '/usr/share/grpc-proto'
REFLECTION = {
    'v1': ('grpc/reflection/v1/reflection.proto', 'grpc.reflection.v1.ServerReflection'),
    'v1alpha': ('grpc/reflection/v1alpha/reflection.proto', 'grpc.reflection.v1alpha.ServerReflection'),
}
EXIT_FAILURE = 1  # argparse exits 2 for bad usage, as grpcurl does
STATUS_CODE_OFFSET = 64


class Failure(Exception):
    """Anything that is not the called method's own status: printed as one line, exit 1."""


def load_reflection_messages(version, workdir):
    """Compiles reflection.proto from Debian's grpc-proto into workdir and imports its messages.

    Only --python_out: the generated *_pb2_grpc.py would import
    `grpc.reflection.v1`, which clashes with the installed `grpc` package, so
    the stream is opened with channel.stream_stream instead. The module is
    loaded by path under a private name for the same reason.
    """
    proto, _ = REFLECTION[version]
    if not os.path.exists(os.path.join(GRPC_PROTO, proto)):
        raise Failure(f'{GRPC_PROTO}/{proto} is missing; apt-get install grpc-proto')
    bundled = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto')
    result = subprocess.run(
        [sys.executable, '-m', 'grpc_tools.protoc', '-I', GRPC_PROTO, '-I', bundled, f'--python_out={workdir}', proto],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f'protoc could not compile {proto}: {result.stderr.strip()}')
    path = os.path.join(workdir, proto.replace('.proto', '_pb2.py'))
    spec = importlib.util.spec_from_file_location(f'_reflect_{version}_pb2', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message_class(descriptor):
    """The message class for a descriptor (GetMessageClass is protobuf >= 4.22; Debian 12 has 3.21)."""
    if hasattr(message_factory, 'GetMessageClass'):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)


class Reflection:
    """One ServerReflectionInfo stream, and the strict pool built from what it answers."""

    def __init__(self, channel, version, workdir, timeout):
        self.pb = load_reflection_messages(version, workdir)
        _, service = REFLECTION[version]
        method = channel.stream_stream(
            f'/{service}/ServerReflectionInfo',
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.pb.ServerReflectionResponse.FromString)
        self.requests = queue.Queue()
        self.responses = method(iter(self.requests.get, None), timeout=timeout)
        self.pool = descriptor_pool.DescriptorPool()
        self.received = {}  # file name -> FileDescriptorProto, as the server sent it
        self.added = []  # file names, in the order they went into the pool

    def close(self):
        self.requests.put(None)
        self.responses.cancel()

    def ask(self, **request):
        self.requests.put(self.pb.ServerReflectionRequest(**request))
        try:
            response = next(self.responses)
        except grpc.RpcError as err:
            raise Failure(f'server reflection failed: {err.code().name}: {err.details()}') from None
        except StopIteration:
            raise Failure('server reflection ended the stream without answering') from None
        if response.HasField('error_response'):
            e = response.error_response
            raise Failure(f'server reflection answered {code_name(e.error_code)}: {e.error_message}')
        return response

    def list_services(self):
        return sorted(s.name for s in self.ask(list_services='').list_services_response.service)

    def _take(self, response, asked):
        if not response.HasField('file_descriptor_response'):
            raise Failure(f'server reflection sent no file descriptors for {asked}')
        names = []
        for raw in response.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.received.setdefault(fdp.name, fdp)
            names.append(fdp.name)
        return names

    def _add(self, name, chain=()):
        """Adds a file to the pool after its dependencies, asking the server for any it has not sent."""
        if name in self.added:
            return
        if name in chain:
            raise Failure(f'import cycle: {" -> ".join(chain + (name,))}')
        if name not in self.received:
            got = self._take(self.ask(file_by_filename=name), f'file {name}')
            if name not in got:
                raise Failure(f'asked for file {name}, the server sent {", ".join(got) or "nothing"}')
        fdp = self.received[name]
        for dep in fdp.dependency:
            self._add(dep, chain + (name,))
        try:
            self.pool.Add(fdp)
            # The pure-Python pool builds lazily; looking the file up makes every implementation check it now.
            self.pool.FindFileByName(name)
        except Exception as err:  # noqa: BLE001 - the pool's own message is the point
            raise Failure(f'the descriptor pool refuses {name}: {err}') from None
        self.added.append(name)

    def file_containing(self, symbol):
        """Loads the file that defines `symbol` (and its imports) into the pool; returns that file's name."""
        for name in self._take(self.ask(file_containing_symbol=symbol), f'symbol {symbol}'):
            self._add(name)
        try:
            return self.pool.FindFileContainingSymbol(symbol).name
        except KeyError:
            raise Failure(f'the server sent files for {symbol} that do not define it') from None


def code_name(number):
    """A status code's name (NOT_FOUND) from its number."""
    return next((c.name for c in grpc.StatusCode if c.value[0] == number), f'code {number}')


# ---- call ---------------------------------------------------------------------------------------

def to_json(message, emit_defaults, proto_names=False):
    """One line of JSON, as json_format renders it (the keyword for defaults was renamed in protobuf 26)."""
    kwargs = {'preserving_proto_field_name': proto_names, 'indent': None}
    if emit_defaults:
        try:
            return json_format.MessageToJson(message, including_default_value_fields=True, **kwargs)
        except TypeError:
            return json_format.MessageToJson(message, always_print_fields_with_no_presence=True, **kwargs)
    return json_format.MessageToJson(message, **kwargs)


def matches(message, path, value):
    """True when the field at `path` (dot-separated, proto or JSON names) renders as `value`."""
    for names in (True, False):
        node = json.loads(to_json(message, True, proto_names=names))
        for part in path.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and str(node) == value:
            return True
    return False


def decode_varint(buf, at):
    shift = result = 0
    while True:
        b = buf[at]
        at += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, at
        shift += 7


def decode_fields(buf):
    """(number, value) for each field of a protobuf message, for the three tiny messages below.

    Hand-written on purpose: Debian ships no googleapis protos, and decoding
    google.rpc.Status, google.protobuf.Any and google.rpc.ErrorInfo needs only
    varints and length-delimited fields. Keeping it off the strict pool also
    keeps the pool holding only what the server sent.
    """
    at, out = 0, []
    while at < len(buf):
        key, at = decode_varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = decode_varint(buf, at)
        elif wire == 2:
            n, at = decode_varint(buf, at)
            if at + n > len(buf):
                raise ValueError(f'field {number} runs past the end')
            value, at = bytes(buf[at:at + n]), at + n
        elif wire == 1:
            value, at = bytes(buf[at:at + 8]), at + 8
        elif wire == 5:
            value, at = bytes(buf[at:at + 4]), at + 4
        else:
            raise ValueError(f'wire type {wire} in field {number}')
        out.append((number, value))
    return out


def status_details(raw):
    """A google.rpc.Status (grpc-status-details-bin): its code and its details, ErrorInfo decoded, others as base64."""
    code, details = 0, []
    for number, any_bytes in decode_fields(raw):
        if number == 1:
            code = any_bytes
        if number != 3:  # 2 is the message, which grpc-message already says
            continue
        fields = dict(decode_fields(any_bytes))
        type_url = fields.get(1, b'').decode()
        value = fields.get(2, b'')
        if type_url.endswith('/google.rpc.ErrorInfo'):
            info = {'@type': type_url, 'reason': '', 'domain': '', 'metadata': {}}
            for n, v in decode_fields(value):
                if n == 1:
                    info['reason'] = v.decode()
                elif n == 2:
                    info['domain'] = v.decode()
                elif n == 3:
                    entry = dict(decode_fields(v))
                    info['metadata'][entry.get(1, b'').decode()] = entry.get(2, b'').decode()
            details.append(info)
        else:
            details.append({'@type': type_url, 'value': base64.b64encode(value).decode()})
    return code, details


def print_status(err):
    """grpcurl's error block, on stderr."""
    code = err.code()
    out = ['ERROR:', f'  Code: {code.name}', f'  Message: {err.details()}']
    raw = next((v for k, v in (err.trailing_metadata() or ()) if k == 'grpc-status-details-bin'), None)
    if raw is not None:
        out.append('  Details:')
        try:
            status_code, details = status_details(raw)
            if status_code != code.value[0]:
                out.append(f'  (the details say {code_name(status_code)}, grpc-status says {code.name})')
            for i, d in enumerate(details, 1):
                out.append(f'  {i})\t{json.dumps(d, sort_keys=True)}')
        except (ValueError, IndexError, UnicodeDecodeError) as bad:
            out.append(f'  (undecodable grpc-status-details-bin: {bad})')
    print('\n'.join(out), file=sys.stderr, flush=True)
    return STATUS_CODE_OFFSET + code.value[0]


def call(channel, refl, target, args):
    service, sep, method_name = target.rpartition('/')
    if not sep:
        service, _, method_name = target.rpartition('.')
    if not service or not method_name:
        raise Failure(f'"{target}" is not SERVICE/METHOD')
    refl.file_containing(service)
    try:
        svc = refl.pool.FindServiceByName(service)
    except KeyError:
        raise Failure(f'Symbol not found: {service}') from None
    method = svc.methods_by_name.get(method_name)
    if method is None:
        raise Failure(f'service "{service}" does not include a method named "{method_name}"')
    if method.client_streaming:
        raise Failure(f'{service}/{method_name} is client-streaming; only unary and server-streaming calls are supported')
    Request, Response = message_class(method.input_type), message_class(method.output_type)
    request = Request()
    try:
        json_format.Parse(args.data or '{}', request)
    except json_format.ParseError as err:
        raise Failure(f'Error invoking method "{target}": error getting request data: {err}') from None
    path = f'/{service}/{method_name}'
    kwargs = {'request_serializer': Request.SerializeToString, 'response_deserializer': Response.FromString}
    until = args.until.split('=', 1) if args.until else None
    try:
        if not method.server_streaming:
            print(to_json(channel.unary_unary(path, **kwargs)(request, timeout=args.max_time), args.emit_defaults), flush=True)
            return 0
        stream = channel.unary_stream(path, **kwargs)(request, timeout=args.max_time)
        for response in stream:
            print(to_json(response, args.emit_defaults), flush=True)
            if until and matches(response, until[0], until[1]):
                stream.cancel()
                return 0
    except grpc.RpcError as err:
        return print_status(err)
    if until:
        raise Failure(f'the stream ended before {until[0]} was {until[1]}')
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='reflect.py', description='A grpcurl-like client that uses only server reflection.')
    parser.add_argument('address', help='HOST:PORT, plaintext')
    parser.add_argument('--v1alpha', action='store_true', help='use grpc.reflection.v1alpha instead of v1')
    parser.add_argument('--max-time', type=float, default=30, help='seconds for the whole operation (default 30)')
    parser.add_argument('--protoset-out', help='write every file the server sent (those the pool took first), as a FileDescriptorSet, to this file')
    verbs = parser.add_subparsers(dest='verb', required=True)
    ls = verbs.add_parser('list', help='services, or the methods of one service')
    ls.add_argument('symbol', nargs='?')
    ds = verbs.add_parser('describe', help='a service, method, message, enum or field, with its comments (default: every service)')
    ds.add_argument('symbol', nargs='?')
    cl = verbs.add_parser('call', help='a unary or server-streaming method')
    cl.add_argument('method', help='SERVICE/METHOD (SERVICE.METHOD also works)')
    cl.add_argument('-d', '--data', help='the request as JSON (proto or lowerCamelCase names)')
    cl.add_argument('--until', metavar='PATH=VALUE', help='end a stream after a message whose field PATH (e.g. state) is VALUE')
    cl.add_argument('--emit-defaults', action='store_true', help='print fields that hold their default value')
    args = parser.parse_args(argv)
    if args.verb == 'call' and args.until is not None and '=' not in args.until:
        parser.error('--until takes PATH=VALUE')
    return args


def run(args, workdir):
    if api_implementation.Type() == 'python':
        # The pure-Python pool accepts descriptors that grpcurl's (Go) refuses; a pass with it would prove nothing.
        raise Failure('protobuf runs its pure-Python implementation, whose pool is lenient; unset PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION')
    channel = grpc.insecure_channel(args.address)
    refl = Reflection(channel, 'v1alpha' if args.v1alpha else 'v1', workdir, args.max_time)
    try:
        if args.verb == 'list':
            if args.symbol is None:
                print('\n'.join(refl.list_services()) or '(No services)')
            else:
                refl.file_containing(args.symbol)
                try:
                    svc = refl.pool.FindServiceByName(args.symbol)
                except KeyError:
                    raise Failure(f'Failed to list methods for service "{args.symbol}": Symbol not found: {args.symbol}') from None
                print('\n'.join(m.full_name for m in svc.methods))
            code = 0
        elif args.verb == 'describe':
            # As grpcurl: no symbol describes every service the server lists.
            for symbol in [args.symbol.lstrip('.')] if args.symbol else refl.list_services():
                text = describe(refl.received[refl.file_containing(symbol)], symbol)
                if text is None:
                    raise Failure(f'Symbol not found: {symbol}')
                print(text)
            code = 0
        else:
            code = call(channel, refl, args.method, args)
        return code
    finally:
        if args.protoset_out:
            # Also after a failure: what the pool refused is what needs looking at.
            names = refl.added + [n for n in refl.received if n not in refl.added]
            with open(args.protoset_out, 'wb') as out:
                out.write(descriptor_pb2.FileDescriptorSet(file=[refl.received[n] for n in names]).SerializeToString())
        refl.close()
        channel.close()


def main(argv):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='reflect-') as workdir:
        try:
            return run(args, workdir)
        except Failure as err:
            print(err, file=sys.stderr, flush=True)
            return EXIT_FAILURE


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
