/**
 * Text for people: aligned tables, label/value lists, RFC 3339 times and
 * enum names without their prefixes.
 */

/** A google.protobuf.Timestamp as proto-loader gives it. */
export interface Timestamp {
  seconds: number | string;
  nanos: number;
}

/** MIGRATION_STATE_PHASE1_DONE -> PHASE1_DONE (and the same for any prefixed enum name). */
export function shortEnum(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length) : value;
}

/** A Timestamp as an RFC 3339 string (UTC, ms precision), or null when unset. */
export function isoTime(ts: Timestamp | null | undefined): string | null {
  if (!ts) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1e6)).toISOString();
}

/**
 * Rows as aligned columns, two spaces apart, no trailing blanks. The first
 * row is usually the header.
 */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd() + '\n').join('');
}

/** "label  value" lines with the labels padded to one width; rows with an empty value are left out. */
export function fields(rows: readonly (readonly [string, string])[]): string {
  return table(rows.filter(([, v]) => v !== ''));
}
