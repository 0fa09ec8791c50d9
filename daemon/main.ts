/**
 * ferryd: parses flags, loads the configuration, starts the daemon and
 * handles signals. Wiring only; the work is in daemon.ts.
 *
 * Exit codes: 0 after a clean shutdown, 1 when forced or on a runtime
 * failure, 2 for a bad flag or setting (an address that cannot be listened
 * on, and TLS or auth files that cannot be used, included), 3 when the
 * data dir is in use.
 */
import { Command } from 'commander';
import { ConfigError, ENV_VARS, loadConfig, type ConfigFlags } from './config.ts';
import { startDaemon } from './daemon.ts';
import { createLog, routeGrpcLogs } from '../lib/log.ts';
import { ListenError } from '../lib/rpc.ts';
import { MetricsListenError } from './metrics-server.ts';
import { StoreLockedError } from './store.ts';
import { AuthFileError } from './access/principals.ts';
import { TlsFileError } from './access/tls.ts';

const program = new Command('ferryd')
  .description('Ferry daemon: two-phase, resumable migration of storage shares')
  .option('--listen <addr>', `HOST:PORT or unix:PATH to serve gRPC on (default 127.0.0.1:50051; env ${ENV_VARS.listen})`)
  .option('--data-dir <dir>', `where state and the embedded simulator's data live (default ./ferry-data; env ${ENV_VARS.dataDir})`)
  .option('--config <file>', `a JSON config file; // and /* */ comments allowed (env ${ENV_VARS.config})`)
  .option('--plugins-dir <dir>', `where driver plugins are found (default: the project's plugins/; env ${ENV_VARS.pluginsDir})`)
  .option('--log-level <level>', `fatal|error|warn|info|debug|trace|silent (default info; env ${ENV_VARS.logLevel})`)
  .option('--tls-cert <file>', `PEM certificate (chain) to serve TLS with; re-read when it changes (env ${ENV_VARS.tlsCert})`)
  .option('--tls-key <file>', `PEM private key of --tls-cert (env ${ENV_VARS.tlsKey})`)
  .option('--tls-client-ca <file>', `PEM CA that clients' certificates must be signed by: mutual TLS (env ${ENV_VARS.tlsClientCa})`)
  .option('--auth <file>', `JSON file of principals (tokens' SHA-256 or certificate subjects, with roles); without it every caller is allowed (env ${ENV_VARS.auth})`)
  .option('--audit-log <file>', `write the audit lines to this file instead of the log (env ${ENV_VARS.auditLog})`)
  .option('--insecure', 'serve a non-loopback --listen without TLS and --auth (warned about at every start)')
  .option('--metrics-listen <addr>', `HOST:PORT to serve Prometheus metrics on at /metrics (default off; env ${ENV_VARS.metricsListen})`)
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program.parse();
const flags = program.opts<ConfigFlags>();

let config;
try {
  config = loadConfig(flags);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`ferryd: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const log = createLog({ level: config.logLevel });
routeGrpcLogs(log);
let daemon;
try {
  daemon = await startDaemon(config, log);
} catch (err) {
  if (err instanceof TlsFileError || err instanceof AuthFileError) {
    log.flush();
    process.stderr.write(`ferryd: ${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof StoreLockedError) {
    process.stderr.write(`ferryd: ${err.message}\n`);
    process.exit(3);
  }
  if (err instanceof ListenError) {
    const [flag, setting] = err instanceof MetricsListenError ? ['--metrics-listen', 'metricsListen'] as const : ['--listen', 'listen'] as const;
    log.flush();
    process.stderr.write(`ferryd: ${err.message}; set another with ${flag}, ${ENV_VARS[setting]} or ${setting} in the config file\n`);
    process.exit(2);
  }
  log.fatal({ err }, 'ferryd failed to start');
  log.flush();
  process.stderr.write(`ferryd: failed to start: ${(err as Error).message}\n`);
  process.exit(1);
}

let signalled = false;
const onSignal = (signal: NodeJS.Signals) => {
  if (signalled) {
    // A second signal: leave now. Nothing is lost, since state is persisted before every action.
    log.warn({ signal }, 'second signal; exiting at once');
    log.flush();
    process.exit(1);
  }
  signalled = true;
  log.info({ signal }, 'signal received; shutting down gracefully (send it again to exit at once)');
  const force = setTimeout(() => {
    log.error({ forceMs: config.shutdownForceMs }, 'shutdown took too long; exiting');
    log.flush();
    process.exit(1);
  }, config.shutdownForceMs);
  force.unref();
  daemon.close().then(
    () => {
      log.flush();
      process.exit(0);
    },
    (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      log.flush();
      process.exit(1);
    },
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);
