/**
 * ferry-sim: the simulated array as its own process.
 *
 *   ferry-sim [serve] --listen HOST:PORT --data-dir DIR [--config FILE]
 *       serves SimulatorService, health and reflection; logs one JSON line
 *       with "address" once listening (with port 0, read the port from it).
 *   ferry-sim workload --target HOST:PORT --share ID [--rate BYTES] ...
 *       runs a workload on a share through the array's API until Ctrl-C or
 *       --seconds, then stops and verifies it.
 *   ferry-sim create-share --target HOST:PORT --backend B --pool P --size 64MiB [--id ID]
 *   ferry-sim shares --target HOST:PORT
 *
 * Exit codes: 0 after a clean shutdown, 1 on a runtime failure, 2 for a bad
 * flag or config, 3 when the data dir is in use by another process.
 */
import * as grpc from '@grpc/grpc-js';
import { Command } from 'commander';
import { HealthImplementation } from 'grpc-health-check';
import { createLog } from '../daemon/log.ts';
import { bind, shutdown } from '../daemon/rpc.ts';
import { Reflection } from '../lib/reflection.ts';
import { SimArray } from './array.ts';
import { SimulatorConfigError, loadSimulatorConfig } from './config.ts';
import { SIMULATOR_SERVICE, addSimulatorService } from './service.ts';
import { parseSize } from '../client/args.ts';
import { runCreateShareCommand, runListSharesCommand, runWorkloadCommand } from './array-cli.ts';

interface ServeFlags {
  listen: string;
  dataDir: string;
  config?: string;
  logLevel: string;
}

async function serve(flags: ServeFlags): Promise<void> {
  const log = createLog({ level: flags.logLevel });
  let config;
  try {
    config = flags.config ? await loadSimulatorConfig(flags.config) : undefined;
  } catch (err) {
    if (!(err instanceof SimulatorConfigError)) throw err;
    process.stderr.write(`ferry-sim: ${err.message}\n`);
    process.exit(2);
  }
  let array: SimArray;
  try {
    array = await SimArray.open({ dataDir: flags.dataDir, ...(config ? { config } : {}), log });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      process.stderr.write(`ferry-sim: data dir ${flags.dataDir} is in use by another process\n`);
      process.exit(3);
    }
    throw err;
  }

  const server = new grpc.Server();
  addSimulatorService(server, array, log);
  const health = new HealthImplementation({ '': 'SERVING', [SIMULATOR_SERVICE]: 'SERVING' });
  health.addToServer(server);
  new Reflection([SIMULATOR_SERVICE, 'grpc.health.v1.Health']).addToServer(server);
  const address = await bind(server, flags.listen);
  log.info({ address, dataDir: flags.dataDir }, 'listening');

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'shutting down (send it again to exit at once)');
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(SIMULATOR_SERVICE, 'NOT_SERVING');
    void (async () => {
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

const program = new Command('ferry-sim')
  .description('Ferry simulated storage array')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command('serve', { isDefault: true })
  .description('serve the array over gRPC')
  .option('--listen <addr>', 'HOST:PORT or unix:PATH to serve on', '127.0.0.1:50061')
  .option('--data-dir <dir>', 'where the array keeps its shares and metadata', './ferry-sim-data')
  .option('--config <file>', 'a JSON file with backends, pools and copy settings (see simulator/config.ts)')
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent', 'info')
  .action((flags: ServeFlags) => serve(flags));

program
  .command('workload')
  .description('run a workload on a share of a running array, then verify it')
  .requiredOption('--target <addr>', 'the array: HOST:PORT (ferry-sim, or ferryd with the embedded array)')
  .requiredOption('--share <id>', 'the share to write to')
  .option('--rate <bytesPerSec>', 'bytes per second (20MiB, 1048576, ...), 0 for as fast as possible', parseSize, 20 * 1024 * 1024)
  .option('--block-size <bytes>', 'bytes per write (64KiB, ...)', parseSize, 64 * 1024)
  .option('--pattern <pattern>', 'sequential|random|hotspot', 'random')
  .option('--concurrency <n>', 'writes in flight', '4')
  .option('--seconds <n>', 'stop after this long (default: at Ctrl-C)')
  .action((flags) => runWorkloadCommand(flags));

program
  .command('create-share')
  .description('create a share on a running array (it reads as zeros until written)')
  .requiredOption('--target <addr>', 'the array: HOST:PORT (ferry-sim, or ferryd with the embedded array)')
  .requiredOption('--backend <name>', 'the backend, e.g. alpha')
  .requiredOption('--pool <name>', 'the pool, e.g. gold')
  .requiredOption('--size <bytes>', 'the size: 64MiB, 1GiB, 1048576, ...', parseSize)
  .option('--id <share_id>', 'the share id (default: generated)')
  .action((flags) => runCreateShareCommand(flags));

program
  .command('shares')
  .description('list the shares of a running array, where each lives now')
  .requiredOption('--target <addr>', 'the array: HOST:PORT (ferry-sim, or ferryd with the embedded array)')
  .action((flags) => runListSharesCommand(flags));

try {
  await program.parseAsync();
} catch (err) {
  // A refusal from the array (unknown share, full pool, ...) is one line, not a stack trace.
  process.stderr.write(`ferry-sim: ${(err as Error).message}\n`);
  process.exit(1);
}
