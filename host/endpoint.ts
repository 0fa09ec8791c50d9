/**
 * The link to a kind-endpoint driver: one running elsewhere (a sidecar,
 * another host) at the address in the backend's options, which ferryd does
 * not start. The channel reconnects by itself, with the supervisor's
 * backoff figures; each time it leaves READY the generation changes, so the
 * backend is opened again before its next call.
 */
import * as grpc from '@grpc/grpc-js';
import { DRIVER_API_VERSION, FerryError } from '../plugins/api/index.ts';
import type { DriverServiceClient } from '../build/types/ferry/driver/v1/DriverService.ts';
import type { GetPluginInfoResponse__Output } from '../build/types/ferry/driver/v1/GetPluginInfoResponse.ts';
import { clientConstructor } from '../lib/rpc.ts';
import { DRIVER_SERVICE } from './driver-wire.ts';
import type { DriverLink } from './remote-driver.ts';
import { checkHealth, DriverProcessError, healthClient, RESTART_INITIAL_MS, RESTART_MAX_MS, type HealthClient } from './supervisor.ts';

/** Checks a backend's `address` option: "unix:PATH" or "host:port". */
export function endpointAddress(options: Record<string, unknown>, backend: string): string {
  const address = options.address;
  if (typeof address !== 'string' || !(/^unix:.+/.test(address) || /^[^\s/]+:\d{1,5}$/.test(address))) {
    throw new FerryError('INVALID_ARGUMENT', `backend ${backend}: options.address must be "unix:PATH" or "host:port" (the driver endpoint's address), got ${JSON.stringify(address) ?? 'nothing'}`);
  }
  return address;
}

/** A channel to a driver endpoint. */
export class EndpointLink implements DriverLink {
  readonly describe: string;
  generation = 0;
  private readonly driver: DriverServiceClient;
  private readonly health: HealthClient;
  private closed = false;
  private readonly listeners = new Set<(up: boolean) => void>();

  constructor(
    readonly address: string,
    private readonly plugin: string,
  ) {
    this.describe = `the driver endpoint ${address} (plugin ${plugin})`;
    const options = { 'grpc.initial_reconnect_backoff_ms': RESTART_INITIAL_MS, 'grpc.max_reconnect_backoff_ms': RESTART_MAX_MS };
    this.driver = new (clientConstructor(DRIVER_SERVICE))(address, grpc.credentials.createInsecure(), options) as unknown as DriverServiceClient;
    // The health client shares the channel (and so its state) with the driver client.
    this.health = healthClient(address, this.driver);
    this.follow(this.driver.getChannel().getConnectivityState(false));
  }

  client(): DriverServiceClient {
    return this.driver;
  }

  /** Calls `fn(false)` when the connection drops and `fn(true)` when it is back. */
  onChange(fn: (up: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Resolves once the endpoint is ready: health SERVING if it serves health
   * (else its first Describe decides), and GetPluginInfo names this plugin
   * and API version. Rejects with DriverProcessError.
   */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let status = 'UNREACHABLE';
    for (let wait = 20; ; wait = Math.min(wait * 2, 250)) {
      status = await checkHealth(this.health, Math.max(1, deadline - Date.now()), true);
      if (status === 'SERVING' || status === 'UNIMPLEMENTED') break;
      if (Date.now() >= deadline || this.closed) throw new DriverProcessError(`${this.describe} was not ready within ${timeoutMs} ms (health: ${status})`, false, 'PLUGIN_LOAD_TIMEOUT');
      await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
    }
    const info = await new Promise<GetPluginInfoResponse__Output>((resolve, reject) =>
      this.driver.GetPluginInfo({}, { deadline: Math.max(deadline, Date.now() + 100) }, (err, res) => (err ? reject(new DriverProcessError(`${this.describe}: GetPluginInfo failed: ${err.message}`, false, 'PLUGIN_START_FAILED')) : resolve(res!))),
    );
    if (info.apiVersion !== DRIVER_API_VERSION) throw new DriverProcessError(`${this.describe} speaks driver API ${info.apiVersion}; this ferryd speaks ${DRIVER_API_VERSION}`, true, 'PLUGIN_API_VERSION_MISMATCH');
    if (info.name !== this.plugin) throw new DriverProcessError(`${this.describe} says its name is "${info.name}", but plugin.json says "${this.plugin}"`, true, 'PLUGIN_MANIFEST_INVALID');
  }

  /** Whether close was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.health.close();
    this.driver.close();
  }

  /** Follows the channel's state: leaving READY is a lost link. */
  private follow(state: grpc.connectivityState): void {
    if (this.closed) return;
    this.driver.getChannel().watchConnectivityState(state, Infinity, () => {
      if (this.closed) return;
      const next = this.driver.getChannel().getConnectivityState(false);
      if (state === grpc.connectivityState.READY && next !== grpc.connectivityState.READY) {
        this.generation++;
        for (const fn of this.listeners) fn(false);
      } else if (next === grpc.connectivityState.READY) {
        for (const fn of this.listeners) fn(true);
      }
      this.follow(next);
    });
  }
}
