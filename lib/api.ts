/**
 * The compiled API description: one FileDescriptorSet that `npm run
 * proto:build` makes from proto/ (plus the gRPC health and reflection
 * protos). Every Ferry process loads its service definitions from it, and
 * reflection serves its files byte for byte, so what a client is told and
 * what a server speaks are the same compiled contract.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
// Adds Root.fromDescriptor and the google.protobuf descriptor types.
import descriptor from 'protobufjs/ext/descriptor/index.js';

/** Where `npm run proto:build` writes the descriptor set. */
export const API_DESCRIPTOR_SET = fileURLToPath(new URL('../build/api/ferry.binpb', import.meta.url));

/** The ErrorInfo domain of the migration API's errors (google.rpc.ErrorInfo.domain). */
export const FERRY_ERROR_DOMAIN = 'ferry.v1';

/** The trailer in which ferryd sends an error's stable code beside the gRPC status (proto/ferry/v1/error_reason.proto). */
export const ERROR_CODE_METADATA = 'ferry-error-code';

/**
 * How every Ferry process maps messages to JS: camelCase fields, enums as
 * their names, 64-bit integers as JS numbers (sizes stay below 2^53),
 * defaults filled in so handlers never see `undefined` for a scalar.
 * The message types in build/types/ are generated with the same options
 * (TYPE_OPTIONS in scripts/proto.mjs; test/lib/api.test.ts holds them equal).
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Thrown when the descriptor set is missing or unreadable. */
export class ApiDescriptionError extends Error {
  override readonly name = 'ApiDescriptionError';
}

/** One file of the set: its encoded FileDescriptorProto and what it declares. */
export interface DescriptorFile {
  /** The import path, e.g. "ferry/v1/migration.proto". */
  name: string;
  /** The FileDescriptorProto exactly as compiled. */
  bytes: Uint8Array;
  /** Import paths of the files it imports. */
  dependencies: string[];
  /** Fully qualified names of every symbol it declares (messages, fields, enums, values, services, methods). */
  symbols: string[];
  /** Fully qualified names of its services. */
  services: string[];
}

/** The loaded API: proto-loader's definitions and the raw files behind them. */
export interface Api {
  /** Service and message definitions for grpc-js. */
  packageDefinition: protoLoader.PackageDefinition;
  /** Files by import path, in the order compiled. */
  files: ReadonlyMap<string, DescriptorFile>;
}

let cached: Api | undefined;

/** Loads the compiled API once per process. Throws ApiDescriptionError naming the fix if it was never built. */
export function loadApi(): Api {
  if (cached) return cached;
  let set: Buffer;
  try {
    set = readFileSync(API_DESCRIPTOR_SET);
  } catch (err) {
    throw new ApiDescriptionError(
      `cannot read the compiled API ${API_DESCRIPTOR_SET} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); run \`npm run proto:build\` (npm install runs it)`,
    );
  }
  cached = { packageDefinition: protoLoader.fromJSON(normalise(descriptorSetToJson(set)), LOADER_OPTIONS), files: indexFiles(set) };
  return cached;
}

/** The descriptor set as protobufjs JSON (the form proto-loader's `fromJSON` takes). */
function descriptorSetToJson(set: Uint8Array): protobuf.INamespace {
  const root = (protobuf.Root as unknown as { fromDescriptor(set: Uint8Array): protobuf.Root }).fromDescriptor(set);
  return root.toJSON();
}

type JsonField = { rule?: string; type: string; keyType?: string; id: number };
type JsonNode = {
  fields?: Record<string, JsonField>;
  oneofs?: Record<string, { oneof: string[] }>;
  nested?: Record<string, JsonNode>;
  options?: Record<string, unknown>;
};

/**
 * Makes protobufjs's reading of a descriptor set match its reading of the
 * .proto text, which is what the code was written against:
 * - fields and oneofs in camelCase, as protobufjs names them when it parses
 *   text without `keepCase` (`fromDescriptor` keeps snake_case, and
 *   proto-loader's `keepCase` applies only to parsing). The wire and JSON
 *   clients are unaffected.
 * - map fields as maps: `fromDescriptor` leaves them as repeated
 *   `XxxEntry` messages (and marks the parent, not the entry, map_entry).
 */
function normalise(ns: protobuf.INamespace): protobuf.INamespace {
  const entries = new Map<string, { keyType: string; type: string }>();
  const collect = (node: JsonNode, name: string) => {
    for (const [child, sub] of Object.entries(node.nested ?? {})) {
      const full = `${name}.${child}`;
      if (sub.options?.map_entry === true && sub.fields?.key && sub.fields.value) entries.set(full, { keyType: sub.fields.key.type, type: sub.fields.value.type });
      collect(sub, full);
    }
  };
  const rewrite = (node: JsonNode, name: string) => {
    if (node.fields) {
      node.fields = Object.fromEntries(
        Object.entries(node.fields).map(([k, f]) => {
          const entry = f.rule === 'repeated' ? entries.get(f.type.startsWith('.') ? f.type : `${name}.${f.type}`) : undefined;
          return [protobuf.util.camelCase(k), entry ? { keyType: entry.keyType, type: entry.type, id: f.id } : f];
        }),
      );
    }
    if (node.oneofs) {
      node.oneofs = Object.fromEntries(
        Object.entries(node.oneofs).map(([k, v]) => [protobuf.util.camelCase(k), { ...v, oneof: v.oneof.map((f) => protobuf.util.camelCase(f)) }]),
      );
    }
    for (const [child, sub] of Object.entries(node.nested ?? {})) {
      if (entries.has(`${name}.${child}`)) delete node.nested![child];
      else rewrite(sub, `${name}.${child}`);
    }
    if (node.options && !entries.has(name)) {
      delete node.options.map_entry;
      if (Object.keys(node.options).length === 0) delete node.options;
    }
  };
  collect(ns as JsonNode, '');
  rewrite(ns as JsonNode, '');
  return ns;
}

/** Looks up a grpc-js service definition by full name, e.g. "ferry.v1.MigrationService". */
export function serviceDefinition(fullName: string): protoLoader.ServiceDefinition {
  const def = loadApi().packageDefinition[fullName];
  if (!def || 'format' in def) throw new Error(`service ${fullName} is not in the compiled API`);
  return def as protoLoader.ServiceDefinition;
}

// Used to read names and imports; the bytes served are never re-encoded.
const FileDescriptorProto = (descriptor as unknown as { FileDescriptorProto: protobuf.Type }).FileDescriptorProto;

interface Named { name?: string }
interface MessageDesc extends Named { field?: Named[]; nestedType?: MessageDesc[]; enumType?: EnumDesc[]; oneofDecl?: Named[]; extension?: Named[] }
interface EnumDesc extends Named { value?: Named[] }
interface FileDesc extends Named {
  package?: string;
  dependency?: string[];
  messageType?: MessageDesc[];
  enumType?: EnumDesc[];
  service?: (Named & { method?: Named[] })[];
  extension?: Named[];
}

/** Splits an encoded FileDescriptorSet into its files without re-encoding them. */
function indexFiles(set: Uint8Array): Map<string, DescriptorFile> {
  const files = new Map<string, DescriptorFile>();
  const reader = protobuf.Reader.create(set);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      reader.skipType(tag & 7);
      continue;
    }
    const bytes = reader.bytes();
    const desc = FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes)) as FileDesc;
    const name = desc.name ?? '';
    if (files.has(name)) continue;
    const pkg = desc.package ? `${desc.package}.` : '';
    const symbols: string[] = [];
    const services: string[] = [];
    const addEnum = (scope: string, e: EnumDesc) => {
      symbols.push(`${scope}${e.name}`);
      // Enum values are scoped beside their enum, as in C++.
      for (const v of e.value ?? []) symbols.push(`${scope}${v.name}`);
    };
    const addMessage = (scope: string, m: MessageDesc) => {
      const full = `${scope}${m.name}`;
      symbols.push(full);
      for (const f of [...(m.field ?? []), ...(m.oneofDecl ?? []), ...(m.extension ?? [])]) symbols.push(`${full}.${f.name}`);
      for (const n of m.nestedType ?? []) addMessage(`${full}.`, n);
      for (const e of m.enumType ?? []) addEnum(`${full}.`, e);
    };
    for (const m of desc.messageType ?? []) addMessage(pkg, m);
    for (const e of desc.enumType ?? []) addEnum(pkg, e);
    for (const x of desc.extension ?? []) symbols.push(`${pkg}${x.name}`);
    for (const s of desc.service ?? []) {
      const full = `${pkg}${s.name}`;
      services.push(full);
      symbols.push(full, ...(s.method ?? []).map((m) => `${full}.${m.name}`));
    }
    files.set(name, { name, bytes, dependencies: desc.dependency ?? [], symbols, services });
  }
  return files;
}
