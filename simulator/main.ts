/**
 * ferry-sim: the simulated array as its own process, and its client commands.
 *
 *   ferry-sim [serve] --listen HOST:PORT --data-dir DIR [--config FILE]
 *       serves SimulatorService, health and reflection; logs one JSON line
 *       with "address" once listening (with port 0, read the port from it).
 *   ferry-sim workload [run] --target HOST:PORT --share ID [--rate BYTES] [--seconds N] ...
 *       runs a workload on a share through the array's API until Ctrl-C or
 *       --seconds, then stops and verifies it.
 *   ferry-sim workload stop ID --target HOST:PORT     stops and verifies one started elsewhere
 *   ferry-sim workload list --target HOST:PORT
 *   ferry-sim create-share --target HOST:PORT --backend B --pool P --size 64MiB [--id ID]
 *   ferry-sim shares --target HOST:PORT
 *
 * Exit codes: SIM_EXIT in array-cli.ts (and EXIT_HELP, which --help shows).
 */
import * as grpc from '@grpc/grpc-js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { HealthImplementation } from 'grpc-health-check';
import { createLog, routeGrpcLogs } from '../lib/log.ts';
import { bind, ListenError, shutdown } from '../lib/rpc.ts';
import { Reflection } from '../lib/reflection.ts';
import { SimArray } from './array.ts';
import { SimulatorConfigError, loadSimulatorConfig } from './config.ts';
import { SIMULATOR_SERVICE, addSimulatorService } from './service.ts';
import { integer, parseSize } from '../lib/units.ts';
import { EXIT_HELP, SIM_EXIT, runCreateShareCommand, runListSharesCommand } from './array-cli.ts';
import { runListWorkloadsCommand, runStopWorkloadCommand, runWorkloadCommand } from './workload-cli.ts';

interface ServeFlags {
  listen: string;
  dataDir: string;
  config?: string;
  logLevel: string;
}

async function serve(flags: ServeFlags): Promise<void> {
  const log = createLog({ level: flags.logLevel });
  routeGrpcLogs(log);
  let config;
  try {
    config = flags.config ? await loadSimulatorConfig(flags.config) : undefined;
  } catch (err) {
    if (!(err instanceof SimulatorConfigError)) throw err;
    process.stderr.write(`ferry-sim: ${err.message}\n`);
    process.exit(SIM_EXIT.USAGE);
  }
  let array: SimArray;
  try {
    array = await SimArray.open({ dataDir: flags.dataDir, ...(config ? { config } : {}), log });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      process.stderr.write(`ferry-sim: data dir ${flags.dataDir} is in use by another process\n`);
      process.exit(SIM_EXIT.DATA_DIR_IN_USE);
    }
    throw err;
  }

  const server = new grpc.Server();
  addSimulatorService(server, array, log);
  const health = new HealthImplementation({ '': 'SERVING', [SIMULATOR_SERVICE]: 'SERVING' });
  health.addToServer(server);
  new Reflection([SIMULATOR_SERVICE, 'grpc.health.v1.Health']).addToServer(server);
  let address: string;
  try {
    address = await bind(server, flags.listen);
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    await array.close();
    process.stderr.write(`ferry-sim: ${err.message}; set another with --listen\n`);
    process.exit(SIM_EXIT.USAGE);
  }
  log.info({ address, dataDir: flags.dataDir }, 'listening');

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'shutting down (send it again to exit at once)');
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(SIMULATOR_SERVICE, 'NOT_SERVING');
    void (async () => {
      // WatchJobs streams never end on their own: end them (OK) first, or the drain would wait its whole grace for them.
      array.jobs.closeWatches();
      await shutdown(server, 5000);
      await array.close();
      log.flush();
      process.exit(0);
    })().catch((err: unknown) => {
      log.error({ err }, 'shutdown failed');
      log.flush();
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** --seconds: a positive number of seconds. */
function seconds(value: string): number {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`"${value}" is not a number of seconds greater than 0`);
  return n;
}

/** Wraps a client command: its exit code becomes the process's. */
const exitWith =
  <A extends unknown[]>(body: (...args: A) => Promise<number>) =>
  async (...args: A) => {
    process.exitCode = await body(...args);
  };

const TARGET_HELP = 'the array: HOST:PORT (ferry-sim, or ferryd with the embedded array)';
const JSON_HELP = 'JSON for scripts: lowerCamelCase fields as in simulator.proto, enums by name, timestamps as RFC 3339 strings';

const program = new Command('ferry-sim')
  .description('Ferry simulated storage array')
  .showHelpAfterError()
  .addHelpText('after', EXIT_HELP)
  .exitOverride((err) => process.exit(err.exitCode === 0 ? SIM_EXIT.OK : SIM_EXIT.USAGE));

program
  .command('serve', { isDefault: true })
  .description('serve the array over gRPC')
  .option('--listen <addr>', 'HOST:PORT or unix:PATH to serve on', '127.0.0.1:50061')
  .option('--data-dir <dir>', 'where the array keeps its shares and metadata', './ferry-sim-data')
  .option('--config <file>', 'a JSON file with backends, pools and copy settings (see simulator/config.ts)')
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent', 'info')
  .action((flags: ServeFlags) => serve(flags));

const WORKLOAD_HELP = `
"workload" alone is "workload run". run prints a line when the workload starts and, once stopped
(Ctrl-C or SIGTERM, or after --seconds), the writes acknowledged and the verification: every block's
last acknowledged write read back; "lost" must be 0. A second Ctrl-C while it stops or verifies
exits at once (130). --json prints one object per line: {"started"}, {"stopped"}, {"verified"}.
${EXIT_HELP}`;

const workload = program
  .command('workload')
  .description('run a workload on a share of a running array until Ctrl-C, then verify it; stop or list workloads')
  .addHelpText('after', WORKLOAD_HELP);

workload
  .command('run', { isDefault: true })
  .description('run a workload on a share until Ctrl-C (or --seconds), then stop and verify it')
  .requiredOption('--target <addr>', TARGET_HELP)
  .requiredOption('--share <id>', 'the share to write to')
  .option('--rate <bytesPerSec>', 'bytes per second (20MiB, 1048576, ...), 0 for as fast as possible', parseSize, 20 * 1024 * 1024)
  .option('--block-size <bytes>', 'bytes per write (64KiB, ...)', parseSize, 64 * 1024)
  .addOption(new Option('--pattern <pattern>', 'where the writes go').choices(['sequential', 'random', 'hotspot']).default('random'))
  .option('--concurrency <n>', 'writes in flight', integer(1, 64), 4)
  .option('--seconds <n>', 'stop after this long (default: at Ctrl-C or SIGTERM)', seconds)
  .option('--reconnect-ms <ms>', 'when the array goes away, look for it this long before giving up (exit 4)', integer(0, 2 ** 31 - 1), 60_000)
  .option('--json', JSON_HELP)
  .addHelpText('after', WORKLOAD_HELP)
  .action(exitWith((flags) => runWorkloadCommand(flags)));

workload
  .command('stop <id>')
  .description('stop a workload (started by any process), then verify it')
  .requiredOption('--target <addr>', TARGET_HELP)
  .option('--json', JSON_HELP)
  .addHelpText('after', EXIT_HELP)
  .action(exitWith((id: string, flags) => runStopWorkloadCommand(id, flags)));

workload
  .command('list')
  .description('list the workloads of a running array, oldest first')
  .requiredOption('--target <addr>', TARGET_HELP)
  .option('--share <id>', 'only the workloads of this share')
  .option('--json', JSON_HELP)
  .action(exitWith((flags) => runListWorkloadsCommand(flags)));

program
  .command('create-share')
  .description('create a share on a running array (it reads as zeros until written)')
  .requiredOption('--target <addr>', TARGET_HELP)
  .requiredOption('--backend <name>', 'the backend, e.g. alpha')
  .requiredOption('--pool <name>', 'the pool, e.g. gold')
  .requiredOption('--size <bytes>', 'the size: 64MiB, 1GiB, 1048576, ...', parseSize)
  .option('--id <share_id>', 'the share id (default: generated)')
  .option('--json', JSON_HELP)
  .action(exitWith((flags) => runCreateShareCommand(flags)));

program
  .command('shares')
  .description('list the shares of a running array, where each lives now')
  .requiredOption('--target <addr>', TARGET_HELP)
  .option('--backend <name>', 'only the shares living on this backend')
  .option('--json', JSON_HELP)
  .action(exitWith((flags) => runListSharesCommand(flags)));

try {
  await program.parseAsync();
} catch (err) {
  // The array would not open (serve), or something unexpected: one line, not a stack trace.
  process.stderr.write(`ferry-sim: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(SIM_EXIT.REFUSED);
}
