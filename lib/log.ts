/**
 * Structured logs: one JSON object per line (pino). Every line about a
 * migration carries `migration`, every line about a backend `backend`.
 */
import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';

/** The logger type used across Ferry (the daemon, the simulator, the kit). */
export type Log = pino.Logger;

/** Where logs go and how much of them. */
export interface LogOptions {
  /** pino level; "silent" turns logging off. Default "info". */
  level?: string;
  /** A file descriptor or path to write to; default stdout. */
  destination?: number | string;
}

/** Creates the root logger. */
export function createLog(options: LogOptions = {}): Log {
  const destination = pino.destination({ dest: options.destination ?? 1, sync: false });
  return pino({ level: options.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** A logger that drops everything, for tests and library use. */
export function silentLog(): Log {
  return pino({ level: 'silent' });
}

/**
 * Sends grpc-js's own messages (it writes "E ..." lines to stderr by
 * default) into `log`, so that stderr carries only the program's one-line
 * errors and the logs stay one JSON object per line.
 */
export function routeGrpcLogs(log: Log): void {
  const grpcLog = log.child({ component: 'grpc-js' });
  grpc.setLogger({
    error: (message: unknown, ...rest: unknown[]) => grpcLog.warn(format(message, ...rest)),
    info: (message: unknown, ...rest: unknown[]) => grpcLog.info(format(message, ...rest)),
    debug: (message: unknown, ...rest: unknown[]) => grpcLog.debug(format(message, ...rest)),
  });
}
