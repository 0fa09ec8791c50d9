/**
 * google.protobuf.Struct, as the compiled API loads it (a map of Values with
 * a `kind` oneof), to and from plain JSON objects: the adapter's config and
 * the backends' options cross the ConformanceAdapter service as Structs.
 */
import type { ListValue__Output } from '../build/types/google/protobuf/ListValue.ts';
import type { Struct, Struct__Output } from '../build/types/google/protobuf/Struct.ts';
import type { Value, Value__Output } from '../build/types/google/protobuf/Value.ts';

/** A plain JSON object as a Struct. Throws TypeError naming the path of a value JSON cannot hold. */
export function toStruct(object: Record<string, unknown>, path = ''): Struct {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v, path ? `${path}.${k}` : k)])) };
}

function toValue(v: unknown, path: string): Value {
  if (v === null) return { nullValue: 'NULL_VALUE', kind: 'nullValue' };
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError(`${path}: ${v} is not a JSON number`);
    return { numberValue: v, kind: 'numberValue' };
  }
  if (typeof v === 'string') return { stringValue: v, kind: 'stringValue' };
  if (typeof v === 'boolean') return { boolValue: v, kind: 'boolValue' };
  if (Array.isArray(v)) return { listValue: { values: v.map((x, i) => toValue(x, `${path}[${i}]`)) }, kind: 'listValue' };
  if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>, path), kind: 'structValue' };
  throw new TypeError(`${path}: a ${typeof v} is not a JSON value`);
}

/** A Struct as a plain JSON object; an absent Struct is {}. */
export function fromStruct(struct: Struct__Output | null | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}

function fromValue(v: Value__Output): unknown {
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return fromStruct(v.structValue);
    case 'listValue':
      return ((v.listValue as ListValue__Output | null)?.values ?? []).map(fromValue);
    default:
      return null;
  }
}
