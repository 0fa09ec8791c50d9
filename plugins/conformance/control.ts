/**
 * The kit's end of the pass-through wrapper (shim.ts) that runs inside the
 * ferryd child: a tiny HTTP server on 127.0.0.1 that the wrapper tells when
 * a driver's start, complete or cancel begins and ends. Normally it answers
 * at once; a check can instead hold one such call, before the driver sees
 * it or after the driver answered, to act at an exact point of the engine's
 * calling pattern (cancel while start is in flight; SIGKILL the engine after
 * complete ran but before its result was persisted). The wire-level wrapper
 * of a process plugin (wire-shim.ts) also reports each driver process it
 * starts, by pid.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** The driver calls the wrapper reports. */
export type HookedCall = 'start' | 'complete' | 'cancel';

/** Before the driver is called, or after it answered (or threw). */
export type HookPhase = 'before' | 'after';

/** What the wrapper reports about one call. */
export interface HookEvent {
  phase: HookPhase;
  call: HookedCall;
  backend: string;
  migration: string;
  share: string;
  /** After: whether the call succeeded. */
  ok?: boolean;
  /** After a success: what the driver returned. */
  result?: unknown;
  /** After a failure: the error's code and message. */
  code?: string;
  message?: string;
}

/** A call held by a check. */
export interface Hold {
  /** Resolves when the call reached the hold (the wrapper is now waiting). */
  reached: Promise<HookEvent>;
  /** Lets the held call go on. Safe to call twice, and after the daemon died. */
  release(): void;
}

interface PendingHold {
  call: HookedCall;
  phase: HookPhase;
  share: string;
  reach: (event: HookEvent) => void;
  response?: ServerResponse;
  released: boolean;
}

/** The control server. One per kit run; it outlives the daemons it serves. */
export class ControlServer {
  private readonly holds = new Set<PendingHold>();
  /** Every event reported, oldest first. */
  readonly events: HookEvent[] = [];
  /** The pids of the driver processes the wire-level wrapper started, oldest first. */
  readonly driverPids: number[] = [];
  private readonly pidWaiters = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    /** The URL the wrapper posts to. */
    readonly url: string,
  ) {}

  /** Listens on 127.0.0.1 on a free port. */
  static async open(): Promise<ControlServer> {
    let control: ControlServer | undefined;
    const server = createServer((req, res) => control!.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('control server has no TCP address');
    control = new ControlServer(server, `http://127.0.0.1:${address.port}`);
    return control;
  }

  /** Holds the next `call` of a migration of `share` at `phase`. One-shot. */
  hold(call: HookedCall, phase: HookPhase, share: string): Hold {
    let reach!: (event: HookEvent) => void;
    const reached = new Promise<HookEvent>((resolve) => (reach = resolve));
    const pending: PendingHold = { call, phase, share, reach, released: false };
    this.holds.add(pending);
    return {
      reached,
      release: () => {
        pending.released = true;
        this.holds.delete(pending);
        answer(pending.response);
      },
    };
  }

  /**
   * The pid of a driver process the wire-level wrapper reported after the
   * first `seen` ones (0: any), waiting up to `waitMs` for it; undefined if
   * none came.
   */
  async driverPid(seen: number, waitMs: number): Promise<number | undefined> {
    if (this.driverPids.length > seen) return this.driverPids[seen];
    return new Promise<number | undefined>((resolve) => {
      const check = () => {
        if (this.driverPids.length <= seen) return;
        done();
      };
      const timer = setTimeout(() => done(), waitMs);
      const done = () => {
        clearTimeout(timer);
        this.pidWaiters.delete(check);
        resolve(this.driverPids[seen]);
      };
      this.pidWaiters.add(check);
    });
  }

  /** Releases every hold and stops listening. */
  async close(): Promise<void> {
    for (const hold of this.holds) {
      hold.released = true;
      answer(hold.response);
    }
    this.holds.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      let event: HookEvent;
      try {
        event = JSON.parse(body) as HookEvent;
      } catch {
        res.statusCode = 400;
        res.end('{}');
        return;
      }
      if (req.url === '/process') {
        const pid = (event as unknown as { pid?: unknown }).pid;
        if (typeof pid === 'number') this.driverPids.push(pid);
        for (const check of [...this.pidWaiters]) check();
        return answer(res);
      }
      this.events.push(event);
      for (const hold of this.holds) {
        if (hold.response || hold.released || hold.call !== event.call || hold.phase !== event.phase || hold.share !== event.share) continue;
        hold.response = res;
        hold.reach(event);
        return;
      }
      answer(res);
    });
  }
}

function answer(res: ServerResponse | undefined): void {
  if (!res || res.writableEnded || res.destroyed) return;
  res.setHeader('content-type', 'application/json');
  res.end('{}');
}
