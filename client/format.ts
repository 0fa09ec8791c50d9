/**
 * How the `ferry` CLI shows migrations, backends and compatibility reports
 * (with the floor's units and tables), and the JSON form of a migration
 * (timestamps as RFC 3339 strings, everything else as the client library
 * returns it).
 */
import { fields, isoTime, shortEnum, table, type Timestamp } from '../lib/text.ts';
import { formatBytes, formatEta, formatMs, formatPercent, formatRate } from '../lib/units.ts';
import { TERMINAL, type Backend, type CompatibilityReport, type Migration, type Progress } from './client.ts';

/** A state as people read it: PHASE1_DONE. */
export function shortState(state: string): string {
  return shortEnum(state, 'MIGRATION_STATE_');
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
    ['data path', dataPathName(m.dataPath)],
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
  const rows: string[][] = [['BACKEND', 'HEALTH', 'DRIVER', 'POOL', 'CAPACITY', 'FREE', 'CAPABILITIES', 'HOST PATH']];
  const reasons: string[] = [];
  for (const b of backends) {
    const head = [b.name, shortEnum(b.health, 'BACKEND_HEALTH_'), b.driverName ? `${b.driverName} ${b.driverVersion}`.trim() : '-'];
    const caps = b.capabilities ? flagList(b.capabilities) : '-';
    const host = [b.hostPath?.source ? 'source' : '', b.hostPath?.destination ? 'destination' : ''].filter(Boolean).join(', ') || '-';
    if (b.pools.length === 0) rows.push([...head, '-', '-', '-', caps, host]);
    b.pools.forEach((pool, i) => rows.push([...(i === 0 ? head : ['', '', '']), pool.name, formatBytes(pool.capacityBytes), formatBytes(pool.freeBytes), i === 0 ? caps : '', i === 0 ? host : '']));
    if (b.healthReason) reasons.push(`${b.name}: ${b.healthReason}`);
  }
  return table(rows) + (reasons.length ? `\nnot serving:\n${reasons.map((r) => `  ${r}\n`).join('')}` : '');
}

/** A DataPath as people read it. */
function dataPathName(path: string | number | undefined): string {
  if (path === 'DATA_PATH_HOST') return "host (ferryd copies snapshots, then the changes)";
  if (path === 'DATA_PATH_DRIVER') return "driver (the source's array copies)";
  return '';
}

/** A CheckCompatibility answer. */
export function compatibilityDetails(share: string, destination: string, r: CompatibilityReport): string {
  return (
    fields([
      ['share', share],
      ['destination', destination],
      ['compatible', r.compatible ? 'yes' : 'no'],
      ['data path', dataPathName(r.dataPath)],
      ['share size', formatBytes(r.shareSizeBytes)],
      ['destination free', formatBytes(r.destinationFreeBytes)],
      ['can honour', flagList(r.capabilities)],
    ]) + (r.reasons.length ? `reasons:\n${r.reasons.map((x) => `  - ${x}\n`).join('')}` : '')
  );
}
