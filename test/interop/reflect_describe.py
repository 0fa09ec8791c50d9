"""describe for reflect.py: one element of a FileDescriptorProto printed as
proto source, as grpcurl prints it, with the leading (and trailing) comments
the server sent in source_code_info. It reads the FileDescriptorProto as
received, after the strict pool has accepted it.
"""
from google.protobuf import descriptor_pb2

LABELS = {descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED: 'repeated '}
SCALARS = {
    getattr(descriptor_pb2.FieldDescriptorProto, f'TYPE_{t.upper()}'): t
    for t in ['double', 'float', 'int64', 'uint64', 'int32', 'fixed64', 'fixed32', 'bool', 'string',
              'bytes', 'uint32', 'sfixed32', 'sfixed64', 'sint32', 'sint64']
}


class Printer:
    """Prints one element of a FileDescriptorProto as proto source, comments from its source_code_info."""

    def __init__(self, fdp):
        self.fdp = fdp
        self.comments = {tuple(loc.path): loc for loc in fdp.source_code_info.location}
        self.lines = []

    def comment(self, path, indent):
        loc = self.comments.get(tuple(path))
        if loc is not None and loc.HasField('leading_comments'):
            for line in loc.leading_comments.rstrip('\n').split('\n'):
                self.lines.append(f'{indent}//{line}')

    def line(self, path, text):
        """A declaration, with its trailing comment (if any) after it."""
        loc = self.comments.get(tuple(path))
        if loc is not None and loc.HasField('trailing_comments'):
            text += ' //' + loc.trailing_comments.strip('\n').replace('\n', ' ')
        self.lines.append(text)

    def service(self, s, path, indent=''):
        self.comment(path, indent)
        self.lines.append(f'{indent}service {s.name} {{')
        for j, m in enumerate(s.method):
            self.method(m, path + [2, j], indent + '  ')
        self.lines.append(f'{indent}}}')

    def method(self, m, path, indent=''):
        self.comment(path, indent)
        cs = 'stream ' if m.client_streaming else ''
        ss = 'stream ' if m.server_streaming else ''
        self.line(path, f'{indent}rpc {m.name} ( {cs}{m.input_type} ) returns ( {ss}{m.output_type} );')

    def field_type(self, f, message):
        if f.type in SCALARS:
            return SCALARS[f.type]
        if f.label == f.LABEL_REPEATED and f.type == f.TYPE_MESSAGE:
            entry = next((n for n in message.nested_type if n.options.map_entry and f.type_name.endswith('.' + n.name)), None)
            if entry is not None:
                k, v = entry.field
                return f'map<{self.field_type(k, entry)}, {self.field_type(v, entry)}>'
        return f.type_name

    def field(self, f, message, path, indent):
        self.comment(path, indent)
        kind = self.field_type(f, message)
        label = '' if kind.startswith('map<') else LABELS.get(f.label, 'optional ' if f.proto3_optional else '')
        self.line(path, f'{indent}{label}{kind} {f.name} = {f.number};')

    def message(self, m, path, indent=''):
        self.comment(path, indent)
        self.lines.append(f'{indent}message {m.name} {{')
        inner = indent + '  '
        real_oneofs = {i for i, f in enumerate(m.field) if f.HasField('oneof_index') and not f.proto3_optional}
        printed_oneofs = set()
        for i, f in enumerate(m.field):
            if i in real_oneofs:
                o = f.oneof_index
                if o in printed_oneofs:
                    continue
                printed_oneofs.add(o)
                self.comment(path + [8, o], inner)
                self.lines.append(f'{inner}oneof {m.oneof_decl[o].name} {{')
                for k, g in enumerate(m.field):
                    if k in real_oneofs and g.oneof_index == o:
                        self.field(g, m, path + [2, k], inner + '  ')
                self.lines.append(f'{inner}}}')
            else:
                self.field(f, m, path + [2, i], inner)
        for k, n in enumerate(m.nested_type):
            if not n.options.map_entry:
                self.message(n, path + [3, k], inner)
        for k, e in enumerate(m.enum_type):
            self.enum(e, path + [4, k], inner)
        self.lines.append(f'{indent}}}')

    def enum(self, e, path, indent=''):
        self.comment(path, indent)
        self.lines.append(f'{indent}enum {e.name} {{')
        for k, v in enumerate(e.value):
            self.comment(path + [2, k], indent + '  ')
            self.line(path + [2, k], f'{indent}  {v.name} = {v.number};')
        self.lines.append(f'{indent}}}')


def describe(fdp, symbol):
    """grpcurl's describe: '<symbol> is a <kind>:' and the element as proto source; None if `fdp` lacks it."""
    prefix = f'{fdp.package}.' if fdp.package else ''
    p = Printer(fdp)

    def find_enum(e, scope, path):
        if scope + e.name == symbol:
            p.enum(e, path)
            return 'an enum'
        for k, v in enumerate(e.value):
            if scope + v.name == symbol:  # values live in the enum's parent scope, as in C++
                p.comment(path + [2, k], '')
                p.line(path + [2, k], f'{v.name} = {v.number};')
                return 'an enum value'
        return None

    def find_message(messages, scope, path):
        for i, m in enumerate(messages):
            name = scope + m.name
            if name == symbol:
                p.message(m, path + [i])
                return 'a message'
            for k, f in enumerate(m.field):
                if f'{name}.{f.name}' == symbol:
                    p.field(f, m, path + [i, 2, k], '')
                    return 'a field'
            for k, e in enumerate(m.enum_type):
                found = find_enum(e, name + '.', path + [i, 4, k])
                if found:
                    return found
            found = find_message(m.nested_type, name + '.', path + [i, 3])
            if found:
                return found
        return None

    kind = None
    for i, s in enumerate(fdp.service):
        if prefix + s.name == symbol:
            p.service(s, [6, i])
            kind = 'a service'
        for j, m in enumerate(s.method):
            if f'{prefix}{s.name}.{m.name}' == symbol:
                p.method(m, [6, i, 2, j])
                kind = 'a method'
    for i, e in enumerate(fdp.enum_type):
        kind = kind or find_enum(e, prefix, [5, i])
    kind = kind or find_message(fdp.message_type, prefix, [4])
    if kind is None:
        return None
    return f'{symbol} is {kind}:\n' + '\n'.join(p.lines)
