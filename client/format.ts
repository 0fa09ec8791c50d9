/**
 * How the `ferry` CLI shows things: sizes in KiB/MiB/GiB, durations, enum
 * names without their prefixes, aligned tables, and the JSON form of a
 * migration (timestamps as RFC 3339 strings, everything else as the client
 * library returns it).
 */
import { TERMINAL, type Backend, type CompatibilityReport, type Migration, type Progress, type Timestamp } from './client.ts';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** 512 B, 1.5 KiB, 2.0 MiB, 1.2 GiB: powers of 1024, one decimal above bytes. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${Math.max(0, Math.round(n))} B`;
  let unit = 0;
  let value = n;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A rate in bytes per second, e.g. "12.5 MiB/s". */
export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(bytesPerSec)}/s`;
}

/** 7s, 3m05s, 2h01m; "-" for 0 (the daemon's "unknown or done"). */
export function formatEta(seconds: number): string {
  if (!(seconds > 0)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A duration in ms, e.g. "12.3 ms" or "1.52 s". */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** "45.2%". */
export function formatPercent(p: number): string {
  return `${(Number.isFinite(p) ? p : 0).toFixed(1)}%`;
}

/** MIGRATION_STATE_PHASE1_DONE -> PHASE1_DONE (and the same for any prefixed enum name). */
export function shortEnum(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length) : value;
}

/** A state as people read it: PHASE1_DONE. */
export function shortState(state: string): string {
  return shortEnum(state, 'MIGRATION_STATE_');
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

/** A migration for `--json`: timestamps become RFC 3339 strings, the rest is kept as it travels. */
export function migrationJson(m: Migration): Record<string, unknown> {
  return {
    ...m,
    createdAt: isoTime(m.createdAt),
    startedAt: isoTime(m.startedAt),
    phase1DoneAt: isoTime(m.phase1DoneAt),
    completingAt: isoTime(m.completingAt),
    cancellingAt: isoTime(m.cancellingAt),
    finishedAt: isoTime(m.finishedAt),
    updatedAt: isoTime(m.updatedAt),
  };
}

const FLAG_NAMES = [
  ['writable', 'writable'],
  ['nondisruptive', 'nondisruptive'],
  ['preserveMetadata', 'preserve-metadata'],
  ['preserveSnapshots', 'preserve-snapshots'],
] as const;

/** The capability or request flags that are set, e.g. "writable, preserve-metadata"; "none" when none is. */
export function flagList(flags: Partial<Record<(typeof FLAG_NAMES)[number][0], boolean>> | null | undefined): string {
  const set = FLAG_NAMES.filter(([key]) => flags?.[key]).map(([, name]) => name);
  return set.length ? set.join(', ') : 'none';
}

/** "1.0 MiB of 2.0 MiB". */
function copied(p: Progress): string {
  return `${formatBytes(p.copiedBytes)} of ${formatBytes(p.totalBytes)}`;
}

/** "8.0 MiB/s average": a finished migration's throughput, which ferryd reports as phase 1's average. */
export function averageRate(p: Progress): string {
  return `${formatRate(p.throughputBytesPerSec)} average`;
}

/** "migration mig-…: alpha/demo -> beta#bronze": the line `watch` and `migrate` start with. */
export function migrationHeader(m: Migration): string {
  return `migration ${m.id}: ${m.share.backend}/${m.share.shareId} -> ${m.destination}`;
}

/** One line about a migration as it stands: what `watch` prints per update when not on a terminal. */
export function progressLine(m: Migration): string {
  const p = m.progress;
  const state = shortState(m.state).padEnd(11);
  if (m.state === 'MIGRATION_STATE_ERROR') return `${state}  ${formatPercent(p.percent)}  ${m.error?.code ?? 'ERROR'}: ${m.error?.message ?? ''}`.trimEnd();
  // Ended: nothing moves, so no ETA and no dirty rate; the throughput is phase 1's average.
  if (TERMINAL.has(m.state)) {
    const cutover = m.cutover ? `  freeze ${formatMs(m.cutover.freezeMs)}  final delta ${formatBytes(m.cutover.finalDeltaBytes)}` : '';
    return `${state}  ${formatPercent(p.percent)}  ${copied(p)}  ${averageRate(p)}${cutover}`;
  }
  const parts = [state, formatPercent(p.percent).padStart(6), copied(p), formatRate(p.throughputBytesPerSec), `eta ${formatEta(p.etaSeconds)}`, `dirty ${formatBytes(p.dirtyBytes)}`];
  if (p.iteration > 1) parts.push(`pass ${p.iteration}`);
  if (p.warning) parts.push(`warning: ${p.warning}`);
  if (m.lastCutoverAbort && m.state === 'MIGRATION_STATE_PHASE1_DONE') parts.push(`last cutover aborted: ${m.lastCutoverAbort.message}`);
  if (m.stuck) parts.push(`STUCK ${m.stuck.code}: ${m.stuck.message}`);
  return parts.join('  ');
}

/** Everything about one migration, as `show`, `start`, `complete` and `cancel` print it. */
export function migrationDetails(m: Migration): string {
  const p = m.progress;
  const time = (label: string, ts: Timestamp | null) => [label, isoTime(ts) ?? ''] as const;
  return fields([
    ['id', m.id],
    ['share', `${m.share.backend}/${m.share.shareId}`],
    ['destination', m.destination],
    ['state', shortState(m.state)],
    ['progress', `${formatPercent(p.percent)}  ${copied(p)} copied, ${formatBytes(p.remainingBytes)} remaining, ${formatBytes(p.dirtyBytes)} dirty`],
    [
      'throughput',
      TERMINAL.has(m.state)
        ? `${averageRate(p)} (phase 1, ${p.iteration} pass${p.iteration === 1 ? '' : 'es'})`
        : `${formatRate(p.throughputBytesPerSec)}  pass ${p.iteration}  eta ${formatEta(p.etaSeconds)}`,
    ],
    ['warning', p.warning],
    ['flags', flagList(m)],
    ['new share type', m.newShareType],
    ['request id', m.requestId],
    ['bandwidth cap', m.maxBandwidthBytesPerSec > 0 ? formatRate(m.maxBandwidthBytesPerSec) : 'none'],
    ['cutover window', `${m.maxDowntimeMs} ms, then ${shortEnum(m.cutoverAction, 'CUTOVER_ACTION_').toLowerCase()}`],
    time('created', m.createdAt),
    time('started', m.startedAt),
    time('phase 1 done', m.phase1DoneAt),
    time('completing', m.completingAt),
    time('cancelling', m.cancellingAt),
    time('finished', m.finishedAt),
    ['error', m.error ? `${m.error.code}: ${m.error.message}` : ''],
    ['stuck', m.stuck ? `${m.stuck.code}: ${m.stuck.message}` : ''],
    ['cutover', m.cutover ? `freeze ${formatMs(m.cutover.freezeMs)}, final delta ${formatBytes(m.cutover.finalDeltaBytes)}, verified in freeze ${formatBytes(m.cutover.verifiedBytes)}` : ''],
    ['last abort', m.lastCutoverAbort ? `${m.lastCutoverAbort.code}: ${m.lastCutoverAbort.message}` : ''],
  ]);
}

/** A page of migrations as a table. */
export function migrationTable(migrations: readonly Migration[]): string {
  if (migrations.length === 0) return 'no migrations\n';
  const rows = migrations.map((m) => [
    m.id,
    shortState(m.state),
    `${m.share.backend}/${m.share.shareId}`,
    m.destination,
    formatPercent(m.progress.percent),
    formatBytes(m.progress.totalBytes),
    isoTime(m.createdAt) ?? '',
  ]);
  return table([['ID', 'STATE', 'SHARE', 'DESTINATION', 'PROGRESS', 'SIZE', 'CREATED'], ...rows]);
}

/** Backends as a table, one row per pool, with the reason under any backend that is not serving. */
export function backendTable(backends: readonly Backend[]): string {
  if (backends.length === 0) return 'no backends\n';
  const rows: string[][] = [['BACKEND', 'HEALTH', 'DRIVER', 'POOL', 'CAPACITY', 'FREE', 'CAPABILITIES']];
  const reasons: string[] = [];
  for (const b of backends) {
    const head = [b.name, shortEnum(b.health, 'BACKEND_HEALTH_'), b.driverName ? `${b.driverName} ${b.driverVersion}`.trim() : '-'];
    const caps = b.capabilities ? flagList(b.capabilities) : '-';
    if (b.pools.length === 0) rows.push([...head, '-', '-', '-', caps]);
    b.pools.forEach((pool, i) => rows.push([...(i === 0 ? head : ['', '', '']), pool.name, formatBytes(pool.capacityBytes), formatBytes(pool.freeBytes), i === 0 ? caps : '']));
    if (b.healthReason) reasons.push(`${b.name}: ${b.healthReason}`);
  }
  return table(rows) + (reasons.length ? `\nnot serving:\n${reasons.map((r) => `  ${r}\n`).join('')}` : '');
}

/** A CheckCompatibility answer. */
export function compatibilityDetails(share: string, destination: string, r: CompatibilityReport): string {
  return (
    fields([
      ['share', share],
      ['destination', destination],
      ['compatible', r.compatible ? 'yes' : 'no'],
      ['share size', formatBytes(r.shareSizeBytes)],
      ['destination free', formatBytes(r.destinationFreeBytes)],
      ['can honour', flagList(r.capabilities)],
    ]) + (r.reasons.length ? `reasons:\n${r.reasons.map((x) => `  - ${x}\n`).join('')}` : '')
  );
}
