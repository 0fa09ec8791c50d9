/**
 * The HTTP server that Prometheus scrapes: GET /metrics answers ferryd's
 * metrics (metrics.ts) in the text format; anything else is 404. It listens
 * only where `metricsListen` says (off by default), and a bind failure is
 * one line naming the address, as for --listen.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Log } from '../lib/log.ts';
import { ListenError, listenFailure } from '../lib/rpc.ts';
import type { DaemonMetrics } from './metrics.ts';

/** Thrown by serveMetrics when its address cannot be listened on: the metricsListen setting's ListenError. */
export class MetricsListenError extends ListenError {
  constructor(failure: ListenError) {
    super(failure.address, failure.code, failure.message);
    this.name = 'MetricsListenError';
  }
}

/** A running metrics server. */
export interface MetricsServer {
  /** The bound address, "host:port" (the port chosen when 0 was asked for). */
  address: string;
  /** Stops listening and ends open connections (a scrape in flight is cut; the next one finds the daemon gone). */
  close(): Promise<void>;
}

/** Serves `metrics` on `address` (HOST:PORT, as config.ts checked it). Rejects with a MetricsListenError. */
export async function serveMetrics(metrics: DaemonMetrics, address: string, log: Log): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at GET /metrics\n');
      return;
    }
    metrics.scrape().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
      (err: unknown) => {
        log.error({ err }, 'collecting the metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('collecting the metrics failed; see the daemon log\n');
      },
    );
  });
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  await listen(server, host.replace(/^\[(.*)\]$/, '$1'), Number(address.slice(colon + 1)), address);
  server.on('error', (err) => log.error({ err }, 'metrics server failed'));
  const bound = `${host}:${(server.address() as AddressInfo).port}`;
  log.info({ address: bound }, 'metrics listening');
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listen(server: Server, host: string, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => reject(new MetricsListenError(listenFailure(address, err.code, err.message)));
    server.once('error', failed);
    server.listen({ host, port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
}
