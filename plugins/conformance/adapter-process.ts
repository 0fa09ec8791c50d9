/**
 * The kit's own instance of a process plugin's command, for its
 * ConformanceAdapter service: started as ferryd starts a driver process
 * (cwd the plugin folder, FERRY_DRIVER_LISTEN=unix:<a kit temp dir>/adapter.sock,
 * stdin a pipe the kit holds), ready once grpc health reports
 * "ferry.driver.v1.DriverService" SERVING. Closing stdin is how it is told
 * to stop (driver.proto: a driver exits when its stdin reaches end of file);
 * SIGTERM, then SIGKILL, if it does not.
 *
 * ferryd starts another instance for itself: the two share only the array.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { clientConstructor } from '../../lib/rpc.ts';
import { DRIVER_HEALTH_NAME } from './adapter-server.ts';
import { RemoteAdapter } from './remote-adapter.ts';

/** The environment variable that tells a driver process where to listen (driver.proto). */
export const LISTEN_ENV = 'FERRY_DRIVER_LISTEN';

/** How long the command may take to serve health, and to exit once its stdin closed. */
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

/** argv0 as ferryd resolves it: a path with a slash is relative to the plugin folder; a bare name is looked up on PATH. */
export function resolveCommand(command: readonly string[], pluginDir: string): string[] {
  const [argv0, ...args] = command;
  if (argv0 === undefined) throw new TypeError('the command is empty');
  return [argv0.includes('/') && !isAbsolute(argv0) ? resolve(pluginDir, argv0) : argv0, ...args];
}

/** A running instance of the plugin's command. */
export class AdapterProcess {
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    /** Its FERRY_DRIVER_LISTEN address. */
    readonly address: string,
    private readonly dir: string,
    private readonly exited: Promise<void>,
  ) {
    // Read both streams to their end, so the process never blocks on a full pipe; keep a tail for errors.
    const keep = (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  /**
   * Starts `command` in `pluginDir` and resolves once it serves health.
   * Rejects, with the tail of what it printed, if it cannot be started,
   * exits first or is not serving within the timeout.
   */
  static async start(command: readonly string[], pluginDir: string, timeoutMs = START_TIMEOUT_MS): Promise<AdapterProcess> {
    const argv = resolveCommand(command, pluginDir);
    const dir = mkdtempSync(join(tmpdir(), 'ferry-conformance-adapter-'));
    const address = `unix:${join(dir, 'adapter.sock')}`;
    const child = spawn(argv[0]!, argv.slice(1), { cwd: pluginDir, env: { ...process.env, [LISTEN_ENV]: address }, stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<void>((done) => child.once('close', () => done()));
    const p = new AdapterProcess(child, address, dir, exited);
    const shown = argv.join(' ');
    try {
      await new Promise<void>((ready, reject) => {
        const timer = setTimeout(() => reject(new Error(`${shown} did not serve health "${DRIVER_HEALTH_NAME}" SERVING on ${address} within ${timeoutMs} ms${p.tail()}`)), timeoutMs);
        const watching = new AbortController();
        const settle = (fn: () => void) => {
          clearTimeout(timer);
          watching.abort();
          fn();
        };
        child.once('error', (err) => settle(() => reject(new Error(`cannot start ${shown} in ${pluginDir}: ${err.message}`))));
        void exited.then(() => settle(() => reject(new Error(`${shown} exited (${child.exitCode ?? child.signalCode}) before it served health${p.tail()}`))));
        waitServing(address, timeoutMs, watching.signal).then(
          () => settle(ready),
          (err: Error) => settle(() => reject(new Error(`${err.message}${p.tail()}`))),
        );
      });
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  /** The process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** A RemoteAdapter on this process's socket. */
  adapter(config: Record<string, unknown> = {}): RemoteAdapter {
    return new RemoteAdapter(this.address, config);
  }

  /**
   * Closes stdin (the driver's signal to exit), then SIGTERM and SIGKILL if
   * it lingers; removes the socket's dir. Resolves with how it exited.
   */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin!.end();
      const term = setTimeout(() => this.child.kill('SIGTERM'), STOP_GRACE_MS);
      const kill = setTimeout(() => this.child.kill('SIGKILL'), 2 * STOP_GRACE_MS);
      await this.exited;
      clearTimeout(term);
      clearTimeout(kill);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return { code: this.child.exitCode, signal: this.child.signalCode };
  }

  /** SIGKILL without waiting (for a process 'exit' handler). */
  killNow(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private tail(): string {
    const t = this.stderr.trim();
    return t ? `; it printed:\n${t}` : '; it printed nothing';
  }
}

/** Resolves once grpc health at `address` reports the driver SERVING (a Watch: no polling). */
function waitServing(address: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const Health = clientConstructor('grpc.health.v1.Health');
  const client = new Health(address, grpc.credentials.createInsecure());
  return new Promise<void>((done, reject) => {
    // waitForReady: the socket does not exist until the process binds it.
    const stream = (client as unknown as Record<string, Function>).Watch!.call(client, { service: DRIVER_HEALTH_NAME }, new grpc.Metadata({ waitForReady: true }), { deadline: Date.now() + timeoutMs }) as grpc.ClientReadableStream<{ status: string }>;
    signal.addEventListener('abort', () => stream.cancel(), { once: true });
    stream.on('data', (r: { status: string }) => {
      if (r.status !== 'SERVING') return;
      stream.cancel();
      client.close();
      done();
    });
    stream.on('error', (err: grpc.ServiceError) => {
      client.close();
      if (err.code !== grpc.status.CANCELLED) reject(new Error(`health of ${address}: ${err.details || err.message}`));
    });
  });
}
