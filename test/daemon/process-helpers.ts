/**
 * Helpers for the tests of process and endpoint drivers: plugin folders of
 * kind process around the bridge (host/serve-module.mjs serving the reference
 * TypeScript driver) or a fixture driver, and a log the test reads as events.
 */
import { EventEmitter } from 'node:events';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { FerryClient } from '../../client/client.ts';
import { clientConstructor } from '../../lib/rpc.ts';
import type { Log } from '../../lib/log.ts';
import { SimClient } from '../simulator/helpers.ts';
import { kill9, ROOT, spawnDaemon, tempDir, type ChildDaemon } from '../helpers.ts';

/** The argv that serves a module plugin folder over DriverService under `name`. */
export const bridgeCommand = (name: string, moduleDir = join(ROOT, 'plugins/simulator')) => [process.execPath, join(ROOT, 'host/serve-module.mjs'), moduleDir, '--name', name];

/** The argv of a fixture driver in test/fixtures/drivers/. */
export const fixtureCommand = (file: string, ...args: string[]) => [process.execPath, join(ROOT, 'test/fixtures/drivers', file), ...args];

/** A plugin folder's files for a kind-process plugin. */
export function processPlugin(name: string, command: string[]): Record<string, string> {
  return { 'plugin.json': JSON.stringify({ name, version: '0.1.0', apiVersion: 1, kind: 'process', command }) };
}

/** A log whose lines the test reads, and awaits. */
export class LogTap {
  readonly lines: Record<string, unknown>[] = [];
  private readonly events = new EventEmitter();
  readonly log: Log;

  constructor(level = 'info') {
    this.events.setMaxListeners(100);
    this.log = pino({ level }, {
      write: (line: string) => {
        const entry = JSON.parse(line) as Record<string, unknown>;
        this.lines.push(entry);
        if (process.env.FERRY_TEST_LOG) appendFileSync(process.env.FERRY_TEST_LOG, line);
        this.events.emit('line', entry);
      },
    });
  }

  /**
   * Resolves with the first line (already logged, or to come) after index
   * `from` that matches. While it waits it keeps the test's event loop
   * alive: the supervisor's restart timer is unref'd (so it never holds a
   * stopping ferryd), and with the driver's process dead nothing else may
   * hold the loop until that timer fires.
   */
  next(match: (line: Record<string, unknown>) => boolean, from = 0): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      const seen = this.lines.slice(from).find(match);
      if (seen) return resolve(seen);
      const keepAlive = setInterval(() => undefined, 60_000);
      const listener = (line: Record<string, unknown>) => {
        if (!match(line)) return;
        this.events.off('line', listener);
        clearInterval(keepAlive);
        resolve(line);
      };
      this.events.on('line', listener);
    });
  }
}

/** The health status of one service of a daemon (grpc.health.v1). */
export async function healthOf(address: string, service: string): Promise<string> {
  const client = new (clientConstructor('grpc.health.v1.Health'))(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) =>
      (client as unknown as { Check(r: object, o: object, cb: (e: Error | null, r?: { status: string }) => void): void }).Check({ service }, { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res!.status))),
    );
  } finally {
    client.close();
  }
}

/** ferryd's arguments for a data dir and a config file (with `file` in it) that outlive the daemons started on them. */
export function childDaemonArgs(t: TestContext, file: Record<string, unknown>): string[] {
  const dir = tempDir(t);
  const config = join(dir, 'ferry.json');
  writeFileSync(config, JSON.stringify(file));
  return ['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--config', config, '--log-level', 'info'];
}

/** A ferryd child process, with a client to it and to its embedded array. */
export interface ConnectedDaemon {
  daemon: ChildDaemon;
  client: FerryClient;
  sim: SimClient;
}

/** Spawns ferryd with `args` and connects to it; the clients close, and the daemon is killed if still up, when the test ends. */
export async function bootDaemon(t: TestContext, args: string[]): Promise<ConnectedDaemon> {
  const daemon = await spawnDaemon(args);
  const client = new FerryClient(daemon.address);
  const sim = new SimClient(daemon.address);
  t.after(async () => {
    client.close();
    sim.close();
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) await kill9(daemon);
  });
  return { daemon, client, sim };
}
