/**
 * A driver process's stdout and stderr, line by line, into ferryd's log.
 *
 * The driver's output is untrusted: a line is cut at MAX_LINE_CHARS (and
 * what follows, up to the next newline, dropped), so a driver that writes
 * without newlines cannot fill ferryd's memory. A line that is a JSON
 * object keeps its fields, but never over ferryd's own: a field whose name
 * ferryd uses (level, time, pid, msg, plugin, backends, ...) is kept as
 * `driver_<name>`. Anything else is logged as text.
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Log } from '../lib/log.ts';
import { bounded } from './untrusted.ts';

/** The longest line kept, in characters; the rest of a longer line is dropped. */
export const MAX_LINE_CHARS = 4_096;

/** Fields of ferryd's log lines a driver's line may not set. */
const RESERVED = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'plugin', 'backends', 'stream', 'driverPid', 'component', 'v']);

/** At most this many fields of a driver's JSON line are kept. */
const MAX_FIELDS = 32;

const LEVELS: Record<string, 'debug' | 'info' | 'warn' | 'error'> = {
  trace: 'debug', debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error', fatal: 'error', critical: 'error',
  10: 'debug', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'error',
};

/** Calls `onLine` with each line of `stream` (without its newline), each at most MAX_LINE_CHARS long. */
export function eachLine(stream: Readable, onLine: (line: string, cut: boolean) => void): void {
  const decoder = new StringDecoder('utf8');
  let buffer = '';
  let dropping = false;
  const take = (text: string) => {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const piece = text.slice(start, nl);
      if (!dropping) onLine((buffer + piece).slice(0, MAX_LINE_CHARS), buffer.length + piece.length > MAX_LINE_CHARS);
      buffer = '';
      dropping = false;
      start = nl + 1;
    }
    if (dropping) return;
    buffer += text.slice(start);
    if (buffer.length > MAX_LINE_CHARS) {
      onLine(buffer.slice(0, MAX_LINE_CHARS), true);
      buffer = '';
      dropping = true;
    }
  };
  stream.on('data', (chunk: Buffer) => take(decoder.write(chunk)));
  stream.on('end', () => {
    const rest = buffer + decoder.end();
    if (rest.length > 0 && !dropping) onLine(rest.slice(0, MAX_LINE_CHARS), false);
  });
}

/** Logs one line of a driver's output. `log` carries plugin and backends already. */
export function logDriverLine(log: Log, line: string, stream: 'stdout' | 'stderr', cut: boolean): void {
  const text = line.replace(/\r$/, '');
  if (text.trim() === '') return;
  let parsed: unknown;
  if (text.startsWith('{')) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  const base = { stream, ...(cut && { cut: true }) };
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
    const fields: Record<string, unknown> = {};
    const own = parsed as Record<string, unknown>;
    for (const key of Object.keys(own).slice(0, MAX_FIELDS)) {
      if (key === 'msg' || key === 'message' || key === 'level') continue;
      fields[RESERVED.has(key) ? `driver_${key}` : key] = own[key];
    }
    const msg = typeof own.msg === 'string' ? own.msg : typeof own.message === 'string' ? own.message : 'driver log';
    const level = LEVELS[String(own.level).toLowerCase()] ?? (stream === 'stderr' ? 'warn' : 'info');
    log[level]({ ...fields, ...base }, bounded(msg, 1_000));
    return;
  }
  // Control characters other than tab are shown escaped: a line of garbage must stay one readable line.
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  log[stream === 'stderr' ? 'warn' : 'info'](base, bounded(clean, MAX_LINE_CHARS));
}
