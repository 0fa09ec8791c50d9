/**
 * The audit trail: one JSON line per mutating call, whatever its result,
 * and per call refused for want of a credential or a role. Each line has
 * the time, the principal (null when ferryd runs without --auth or the
 * caller was not known), the peer's address, the method, the migration,
 * share and destination it concerned when the call named them (a refused
 * call is refused before its request is read, so its line has none), and
 * the gRPC result code, with
 * `"audit": true`. They go into ferryd's log, or with `--audit-log FILE`
 * into that file alone, appended, each line written synchronously
 * before the call's answer leaves (in ferryd's log a line is as durable as
 * the log's other lines). A credential is never part of a line.
 */
import { pino } from 'pino';
import type { Log } from '../../lib/log.ts';

/** One audited call. */
export interface AuditEntry {
  principal: string | null;
  /** The role the principal holds (absent without --auth). */
  role?: string;
  peer: string;
  /** "package.Service/Method". */
  method: string;
  migration?: string;
  share?: string;
  destination?: string;
  /** The gRPC status name: OK, PERMISSION_DENIED, ... */
  code: string;
  /** The status message, for a call that did not succeed. */
  message?: string;
}

/** Where audit lines go. */
export class AuditTrail {
  private readonly out: Log;
  private readonly file?: pino.DestinationStream & { flushSync?(): void; end?(): void };

  /** Into `log`, or into `file` (created if missing, appended to) when one is given. */
  constructor(log: Log, file?: string) {
    if (file === undefined) {
      this.out = log;
      return;
    }
    const destination = pino.destination({ dest: file, sync: true, append: true, mkdir: true });
    this.file = destination;
    this.out = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  }

  write(entry: AuditEntry): void {
    this.out.info({ audit: true, ...entry }, 'audit');
  }

  /** Closes the file, if there is one. */
  close(): void {
    this.file?.end?.();
  }
}
