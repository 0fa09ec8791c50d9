/**
 * The array and the daemon as real child processes, as an operator runs
 * them: `ferry-sim` (bin/ferry-sim.mjs) serving the simulated array, and
 * `ferryd` (bin/ferryd.mjs) driving it through the simulator plugin with
 * `simulator.embedded: false`. Each is found by the address it logs once it
 * serves; its pid is what /proc is read for.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './report.ts';

/** A served child process. */
export interface Served {
  child: ChildProcess;
  pid: number;
  address: string;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL; resolves once it is gone. */
  kill9(): Promise<void>;
}

/** Spawns `node <bin> ...args` and resolves once a log line has msg `ready` (its `address` field is the address). */
function serve(bin: string, args: string[], ready: string, what: string, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  // For profiling a child: BENCH_NODE_ARGS are flags for node itself (--cpu-prof is refused in NODE_OPTIONS);
  // BENCH_STDOUT_FILE gets every line the child prints (--trace-gc output, logs).
  const { BENCH_NODE_ARGS: nodeArgs = '', BENCH_STDOUT_FILE: stdoutFile, ...rest } = env;
  const argv = [...nodeArgs.split(' ').filter(Boolean), path.join(ROOT, bin), ...args];
  const child = spawn(process.execPath, argv, { cwd: ROOT, env: { ...process.env, ...rest }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async (graceMs = 20_000) => {
    if (gone()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const kill9 = async () => {
    if (gone()) return;
    child.kill('SIGKILL');
    await exited;
  };
  return new Promise<Served>((resolve, reject) => {
    // Every line is read (and dropped once ready): a pipe nobody drains would block the child's logging.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (stdoutFile) appendFileSync(stdoutFile, `${line}\n`);
      if (!line.includes(`"msg":"${ready}"`)) return;
      try {
        const entry = JSON.parse(line) as { address?: string };
        if (entry.address) resolve({ child, pid: child.pid!, address: entry.address, exited, stop, kill9 });
      } catch {
        // Not a log line.
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`${what} exited (${code ?? signal}) before it served: ${stderr.trim()}`)));
  });
}

/** Starts `ferry-sim` on 127.0.0.1:0 over `dataDir` with `config` (simulator/config.ts settings). */
export function startArray(dataDir: string, config: object = {}, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const file = path.join(dataDir, '..', `${path.basename(dataDir)}-config.json`);
  writeFileSync(file, JSON.stringify(config));
  return serve('bin/ferry-sim.mjs', ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', file, '--log-level', 'info'], 'listening', 'ferry-sim', env);
}

/**
 * Starts `ferryd` on 127.0.0.1:0 with its state in `dataDir`, its backends
 * (`names`, default alpha and beta) driven by `plugin` (one of the repo's
 * plugins, default the simulator's TypeScript driver; "simulator-py" for the
 * Python one) against the array at `arrayAddress` (no embedded array),
 * default engine settings unless `engine` overrides some, and `extra`
 * settings of the config file. `env` adds environment variables;
 * BENCH_NODE_ARGS in it adds flags for node itself (--cpu-prof, say).
 */
export function startDaemon(dataDir: string, arrayAddress: string, engine: object = {}, env: NodeJS.ProcessEnv = {}, plugin = 'simulator', names = ['alpha', 'beta'], extra: object = {}): Promise<Served> {
  const file = path.join(dataDir, '..', `${path.basename(dataDir)}-config.json`);
  const backends = names.map((name) => ({ name, plugin, options: { endpoint: arrayAddress } }));
  writeFileSync(file, JSON.stringify({ simulator: { embedded: false }, backends, engine, ...extra }));
  return serve('bin/ferryd.mjs', ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', file], 'ferryd ready', 'ferryd', env);
}

/** Starts `ferryd` with its embedded array (the zero-setup default), state in `dataDir`. */
export function startEmbeddedDaemon(dataDir: string): Promise<Served> {
  return serve('bin/ferryd.mjs', ['--listen', '127.0.0.1:0', '--data-dir', dataDir], 'ferryd ready', 'ferryd');
}
