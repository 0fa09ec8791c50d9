/**
 * A backend of a kind-process or kind-endpoint plugin: its RemoteDriver,
 * opened once the driver is ready, and guarded like any driver.
 *
 * A driver that is not ready when ferryd starts does not hold ferryd up:
 * the backend starts without a driver (NOT_SERVING, with the reason), and
 * once the driver is ready (the supervisor restarted it, the endpoint came
 * up) the backend is opened and its driver handed over through
 * `hooks.attach`. Every later loss and recovery of the link calls
 * `hooks.changed`, so that the backend's health follows at once.
 */
import { FerryError } from '../plugins/api/index.ts';
import type { Log } from '../lib/log.ts';
import type { Deadlines } from './deadlines.ts';
import { EndpointLink, endpointAddress } from './endpoint.ts';
import { GuardedDriver, type CallObserver } from './guard.ts';
import { PluginError, type BackendConfig, type BackendHooks, type LoadedPlugin } from './plugins.ts';
import { RemoteDriver } from './remote-driver.ts';
import { DriverProcessError, RESTART_INITIAL_MS, RESTART_MAX_MS, type Supervisor } from './supervisor.ts';

/** What creating a remote backend needs from ferryd. */
export interface RemoteContext {
  /** Endpoint links made, so that the host closes them at shutdown. */
  endpoints: Set<EndpointLink>;
  daemonAddress: string;
  deadlines: Deadlines;
  timeoutMs: number;
  log: Log;
  hooks?: BackendHooks;
  /** Told of every driver call (metrics). */
  observe?: CallObserver;
}

/** Creates the guarded driver of a remote backend, or throws PluginError (and, with hooks, attaches it later). */
export async function createRemoteBackend(backend: BackendConfig, plugin: LoadedPlugin, context: RemoteContext): Promise<GuardedDriver> {
  const name = plugin.manifest.name;
  const log = context.log.child({ backend: backend.name, plugin: name });
  const guard = (remote: RemoteDriver) => new GuardedDriver(backend.name, { name, version: plugin.manifest.version, remote: true }, remote, context.deadlines, log, context.observe);
  let link: Supervisor | EndpointLink;
  if (plugin.manifest.kind === 'endpoint') {
    try {
      link = new EndpointLink(endpointAddress(backend.options, backend.name), name);
      context.endpoints.add(link);
    } catch (err) {
      throw new PluginError('DRIVER_CREATE_FAILED', name, `plugin ${name}: ${(err as Error).message}`);
    }
  } else if (plugin.process) {
    link = plugin.process;
  } else {
    throw new PluginError('DRIVER_CREATE_FAILED', name, `plugin ${name} is kind process, but this host starts no driver processes (no data dir was given)`);
  }
  const ownLink = link instanceof EndpointLink ? link : undefined;
  const remote = new RemoteDriver(link, backend.name, backend.options, context.daemonAddress, context.deadlines, context.timeoutMs, log, () => ownLink?.close());
  const open = async () => {
    await link.ready(context.timeoutMs);
    await remote.open();
  };
  // From the moment the backend has its driver, each loss and recovery of the link is probed at once.
  const follow = () => link.onChange(() => context.hooks?.changed());
  try {
    await open();
    follow();
    return guard(remote);
  } catch (err) {
    const failure = asPluginError(err, name, backend.name);
    if (context.hooks && !(err instanceof DriverProcessError && err.permanent)) {
      retryUntilOpen(open, () => {
        context.hooks!.attach(guard(remote));
        follow();
      }, link, log);
    }
    else ownLink?.close();
    throw failure;
  }
}

/** Opens the backend again and again, with backoff, until it opens (then attaches it) or the link is closed for good. */
function retryUntilOpen(open: () => Promise<void>, attach: () => void, link: Supervisor | EndpointLink, log: Log): void {
  let delay = RESTART_INITIAL_MS;
  const attempt = () => {
    if (link.isClosed || ('permanentFailure' in link && link.permanentFailure)) return;
    open().then(
      () => {
        log.info('backend opened on its driver after all; it serves again');
        attach();
      },
      (err: unknown) => {
        log.debug({ reason: (err as Error).message, retryInMs: delay }, 'backend still cannot be opened on its driver');
        setTimeout(attempt, delay).unref();
        delay = Math.min(delay * 2, RESTART_MAX_MS);
      },
    );
  };
  setTimeout(attempt, delay).unref();
}

function asPluginError(err: unknown, plugin: string, backend: string): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof DriverProcessError) return new PluginError(err.code, plugin, `plugin ${plugin}: ${err.message}`);
  const message = err instanceof FerryError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err);
  return new PluginError('DRIVER_CREATE_FAILED', plugin, `plugin ${plugin}: OpenBackend for backend ${backend} failed: ${message}`);
}
