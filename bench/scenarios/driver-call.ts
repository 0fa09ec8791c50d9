/**
 * The cost of the process boundary: one driver call's round trip through
 * ferryd's plugin host (loader, guard, deadlines), for the same simulated
 * array reached three ways:
 *
 *   module     plugins/simulator, imported into this process (in-process)
 *   process    the same TypeScript driver as a kind-process plugin: the
 *              bridge (host/serve-module) serving it over ferry.driver.v1 on
 *              a unix socket, so the difference is the boundary alone
 *   python     plugins/simulator-py, the Python reference driver (the
 *              boundary and the language)
 *
 * The array runs as its own process (ferry-sim). One migration per driver
 * is started on a 64 MiB share; then `continue` (what the engine calls most,
 * every poll of every migration) is called back to back in rounds of 100 per
 * driver, the drivers taking turns, so that all three see the same machine.
 * Each call does one array round trip (the job's state) whichever way the
 * driver is reached.
 *
 * Beside them, the floor of the boundary: a bare gRPC round trip from this
 * process (grpc-js, as ferryd makes its calls) to each driver process's
 * socket (grpc.health.v1.Health/Check, which does no work). What a process
 * driver adds to a call cannot be less than that round trip.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_DEADLINES, DEFAULT_HEALTH_PROBE_MS, DEFAULT_PLUGIN_LOAD_TIMEOUT_MS } from '../../host/deadlines.ts';
import type { GuardedDriver } from '../../host/guard.ts';
import { closePlugins, createBackendDriver, scanPlugins } from '../../host/plugins.ts';
import { checkHealth, healthClient, type HealthClient } from '../../host/supervisor.ts';
import { silentLog } from '../../lib/log.ts';
import type { Checkpoint, MigrationSpec } from '../../plugins/api/index.ts';
import { prepareShares } from '../lib/fleet.ts';
import { startArray } from '../lib/processes.ts';
import { fmt, ROOT, type Scenario, type ScenarioReport } from '../lib/report.ts';
import { summarise, type Summary } from '../lib/stats.ts';

const MiB = 2 ** 20;
const ROUND = 100;

/** The three ways to the array, by plugin name. */
const WAYS = [
  { name: 'module', plugin: 'simulator', what: 'in-process TypeScript module' },
  { name: 'process', plugin: 'simulator-bridge', what: 'the same TypeScript driver as a process (ferry.driver.v1 on a unix socket)' },
  { name: 'python', plugin: 'simulator-py', what: 'the Python reference driver (process)' },
] as const;

interface Way {
  name: string;
  what: string;
  driver: GuardedDriver;
  spec: MigrationSpec;
  checkpoint: Checkpoint;
  ms: number[];
}

/** A bare round trip to a driver process's socket: the floor of what the boundary adds. */
interface Floor {
  name: string;
  what: string;
  health: HealthClient;
  ms: number[];
}

const FLOORS = [
  { name: 'floor process', plugin: 'simulator-bridge', what: "bare gRPC round trip to the bridge's socket (Health/Check)" },
  { name: 'floor python', plugin: 'simulator-py', what: "bare gRPC round trip to the Python driver's socket (Health/Check)" },
] as const;

/** One health check, as ferryd's liveness check makes it. */
async function check(health: HealthClient): Promise<void> {
  const status = await checkHealth(health, 5_000, false);
  if (status !== 'SERVING') throw new Error(`the driver process answered its health check with ${status}`);
}

function spec(id: string, shareId: string): MigrationSpec {
  return {
    id,
    source: { backend: 'alpha', shareId },
    destination: { backend: 'beta', pool: 'bronze' },
    writable: true,
    nondisruptive: false,
    preserveMetadata: false,
    preserveSnapshots: false,
    newShareType: '',
    maxBandwidthBytesPerSec: 0,
    maxDowntimeMs: 1000,
    cutoverAction: 'abort',
    dataPath: 'driver',
  };
}

/** A plugins dir holding the reference drivers, and the bridge serving the TypeScript one as a process plugin. */
function pluginsDir(dir: string): string {
  const plugins = path.join(dir, 'plugins');
  mkdirSync(path.join(plugins, 'simulator-bridge'), { recursive: true });
  symlinkSync(path.join(ROOT, 'plugins/simulator'), path.join(plugins, 'simulator'));
  symlinkSync(path.join(ROOT, 'plugins/simulator-py'), path.join(plugins, 'simulator-py'));
  const command = [process.execPath, path.join(ROOT, 'host/serve-module.mjs'), path.join(ROOT, 'plugins/simulator'), '--name', 'simulator-bridge'];
  writeFileSync(path.join(plugins, 'simulator-bridge', 'plugin.json'), JSON.stringify({ name: 'simulator-bridge', version: '0.1.0', apiVersion: 1, kind: 'process', command }));
  return plugins;
}

export const driverCallScenario: Scenario = {
  name: 'driver-call',
  title: 'One driver call through the plugin host: in-process module vs process driver (TypeScript and Python)',
  async run(ctx): Promise<ScenarioReport> {
    const calls = ctx.quick ? 500 : 5_000;
    const warmup = ctx.quick ? 100 : 500;
    const dir = path.join(ctx.scratch, 'driver-call');
    mkdirSync(dir, { recursive: true });
    const log = silentLog();
    const config = { backends: [{ name: 'alpha', pools: [{ name: 'gold', capacityBytes: 4 * 2 ** 30 }] }, { name: 'beta', pools: [{ name: 'bronze', capacityBytes: 4 * 2 ** 30 }] }] };
    const shares = await prepareShares(path.join(dir, 'array'), config, 'call-', WAYS.length, 64 * MiB);
    const array = await startArray(path.join(dir, 'array'), config);
    const backends = [{ name: 'alpha', plugin: 'x', options: { endpoint: array.address } }];
    const scan = await scanPlugins(pluginsDir(dir), {
      timeoutMs: DEFAULT_PLUGIN_LOAD_TIMEOUT_MS,
      log,
      processes: { dataDir: path.join(dir, 'data'), backends, livenessMs: DEFAULT_HEALTH_PROBE_MS, livenessTimeoutMs: DEFAULT_DEADLINES.describe },
    });
    const ways: Way[] = [];
    const floors: Floor[] = [];
    try {
      for (const [i, w] of WAYS.entries()) {
        const failure = scan.failures.get(w.plugin);
        if (failure) throw new Error(`plugin ${w.plugin} did not load: ${failure.message}`);
        const driver = await createBackendDriver({ name: 'alpha', plugin: w.plugin, options: { endpoint: array.address } }, scan, {
          daemonAddress: '127.0.0.1:1',
          deadlines: DEFAULT_DEADLINES,
          timeoutMs: DEFAULT_PLUGIN_LOAD_TIMEOUT_MS,
          log,
        });
        const s = spec(`bench-call-${w.name}`, shares[i]!);
        await driver.checkCompatibility(s, log);
        const { checkpoint } = await driver.start({ migration: s, checkpoint: null, log });
        ways.push({ name: w.name, what: w.what, driver, spec: s, checkpoint, ms: [] });
      }
      for (const f of FLOORS) {
        const supervisor = scan.plugins.get(f.plugin)?.process;
        if (!supervisor) throw new Error(`plugin ${f.plugin} has no driver process`);
        floors.push({ name: f.name, what: f.what, health: healthClient(supervisor.address), ms: [] });
      }
      const bare = async (floor: Floor, keep: boolean) => {
        const t0 = performance.now();
        await check(floor.health);
        if (keep) floor.ms.push(performance.now() - t0);
      };
      const once = async (way: Way, keep: boolean) => {
        const t0 = performance.now();
        const r = await way.driver.continue({ migration: way.spec, checkpoint: way.checkpoint, log });
        if (keep) way.ms.push(performance.now() - t0);
        way.checkpoint = r.checkpoint;
      };
      for (const way of ways) for (let k = 0; k < warmup; k++) await once(way, false);
      for (const floor of floors) for (let k = 0; k < warmup; k++) await bare(floor, false);
      ctx.log(`driver-call: ${calls} continue calls per driver, in rounds of ${ROUND}, and as many bare round trips to each driver process`);
      for (let done = 0; done < calls; done += ROUND) {
        const n = Math.min(ROUND, calls - done);
        for (const way of ways) for (let k = 0; k < n; k++) await once(way, true);
        for (const floor of floors) for (let k = 0; k < n; k++) await bare(floor, true);
      }
      for (const way of ways) {
        for (let k = 0; k < 100; k++) {
          const r = await way.driver.cancel({ migration: way.spec, checkpoint: way.checkpoint, log });
          way.checkpoint = r.checkpoint;
          if (r.done) break;
        }
      }
    } finally {
      for (const floor of floors) floor.health.close();
      for (const way of ways) await way.driver.close();
      await closePlugins(scan, 5_000);
      await array.stop(5_000);
      await rm(dir, { recursive: true, force: true });
    }

    const stats = new Map<string, Summary>([...ways, ...floors].map((w) => [w.name, summarise(w.ms)]));
    const module = stats.get('module')!;
    const added = (name: string, key: 'median' | 'p99') => stats.get(name)![key] - module[key];
    for (const w of [...ways, ...floors]) ctx.log(`driver-call ${w.name}: p50 ${fmt(stats.get(w.name)!.median, 3)} ms, p99 ${fmt(stats.get(w.name)!.p99, 3)} ms`);
    return {
      tables: [
        {
          title: `One continue call through the plugin host, ${calls} calls per driver (ms)`,
          header: ['driver', 'p50', 'p90', 'p99', 'max', 'mean', 'added at p50', 'added at p99'],
          rows: [...ways, ...floors].map((w) => {
            const s = stats.get(w.name)!;
            const delta = w.name !== 'module' && !w.name.startsWith('floor');
            return [`${w.name}: ${w.what}`, fmt(s.median, 3), fmt(s.p90, 3), fmt(s.p99, 3), fmt(s.max, 2), fmt(s.mean, 3), delta ? fmt(added(w.name, 'median'), 3) : '', delta ? fmt(added(w.name, 'p99'), 3) : ''];
          }),
          notes: [
            'Each call goes through ferryd\'s loader and guard (deadline, answer checks) and does one round trip to the array (ferry-sim, its own process) whichever way the driver is reached.',
            `added: the figure minus the module's. Drivers take turns in rounds of ${ROUND} calls, after ${warmup} calls each to warm up.`,
            "floor: one gRPC call that does nothing, from this process to the driver process (grpc-js client, unix socket): what a process driver adds to a call cannot be less.",
          ],
        },
      ],
      summary: [
        {
          scenario: 'driver-call',
          measure: 'continue round trip p50 / p99 (ms)',
          ferry: `process ${fmt(stats.get('process')!.median, 3)} / ${fmt(stats.get('process')!.p99, 3)}; python ${fmt(stats.get('python')!.median, 3)} / ${fmt(stats.get('python')!.p99, 3)}`,
          baseline: `module ${fmt(module.median, 3)} / ${fmt(module.p99, 3)}`,
          ratio: `+${fmt(added('process', 'median'), 3)} ms (process), +${fmt(added('python', 'median'), 3)} ms (python) at p50; a bare round trip ${fmt(stats.get('floor process')!.median, 3)} / ${fmt(stats.get('floor python')!.median, 3)}`,
        },
      ],
      targets: [
        { target: 'process boundary: under 0.3 ms added per call at p50', measured: `${fmt(added('process', 'median'), 3)} ms (TypeScript driver as a process)`, met: added('process', 'median') < 0.3 },
        { target: 'Python driver: under 0.3 ms added per call at p50', measured: `${fmt(added('python', 'median'), 3)} ms`, met: added('python', 'median') < 0.3 },
      ],
      data: { calls, warmup, round: ROUND, stats: Object.fromEntries(stats) },
    };
  },
};
