/**
 * The engine under test: a real ferryd child process, started through its
 * bin (as `npx ferryd` does) on 127.0.0.1:0, and killed with SIGKILL when a
 * check needs the engine to die mid-migration. Its JSON log lines are kept,
 * so that a failure can name the driver call that broke.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** ferryd's launcher in this repository. */
export const FERRYD_BIN = fileURLToPath(new URL('../../bin/ferryd.mjs', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How many log lines are kept across every daemon of a run. */
const MAX_LOG_LINES = 5_000;

/** One parsed log line. */
export type LogLine = Record<string, unknown>;

/** How to start ferryd. */
export interface DaemonArgs {
  dataDir: string;
  configFile: string;
  pluginsDir: string;
  /** How long to wait for "ferryd ready". */
  startTimeoutMs: number;
}

/** A running ferryd child. */
export class DaemonProcess {
  private constructor(
    private readonly child: ChildProcess,
    /** Its gRPC address. */
    readonly address: string,
    private readonly exited: Promise<void>,
  ) {}

  /**
   * Starts ferryd and resolves once it logs "ferryd ready". Every log line
   * is appended to `logs`. Rejects with ferryd's stderr if it exits first.
   */
  static async start(args: DaemonArgs, logs: LogLine[], onLine?: (line: LogLine) => void): Promise<DaemonProcess> {
    const child = spawn(
      process.execPath,
      [FERRYD_BIN, '--listen', '127.0.0.1:0', '--data-dir', args.dataDir, '--config', args.configFile, '--plugins-dir', args.pluginsDir, '--log-level', 'info'],
      { cwd: REPO_ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    let timer: NodeJS.Timeout | undefined;
    try {
      const address = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on('line', (line) => {
          let entry: LogLine;
          try {
            entry = JSON.parse(line) as LogLine;
          } catch {
            return;
          }
          logs.push(entry);
          if (logs.length > MAX_LOG_LINES) logs.splice(0, logs.length - MAX_LOG_LINES);
          onLine?.(entry);
          if (entry.msg === 'ferryd ready') resolve(String(entry.address));
        });
        void exited.then(({ code, signal }) => reject(new Error(`ferryd exited (${code ?? signal}) before it was ready: ${stderr.trim() || lastError(logs)}`)));
        timer = setTimeout(() => reject(new Error(`ferryd was not ready within ${args.startTimeoutMs} ms: ${stderr.trim() || lastError(logs)}`)), args.startTimeoutMs);
      });
      return new DaemonProcess(child, address, exited.then(() => undefined));
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (ferryd shuts down in order), then SIGKILL if it is not gone within `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.killNow(), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL without waiting (for a process 'exit' handler). */
  killNow(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

function lastError(logs: LogLine[]): string {
  const line = [...logs].reverse().find((l) => typeof l.level === 'number' && l.level >= 50);
  return line ? `${String(line.msg)}${line.reason ? `: ${String(line.reason)}` : ''}` : 'no error logged';
}
