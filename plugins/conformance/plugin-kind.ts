/**
 * How a plugin runs, as its plugin.json says: `"kind": "module"` (the
 * default: a TypeScript module inside ferryd), `"process"` (ferryd starts
 * `"command"` and speaks ferry.driver.v1 to it) or `"endpoint"` (a driver
 * served elsewhere, at an address in each backend's options).
 *
 * TODO(host/plugins.ts): the loader is gaining `kind` and `command` (issue
 * 11, branch proc); once it has, take both from its checked manifest and
 * delete this file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The three plugin kinds. */
export const PLUGIN_KINDS = ['module', 'process', 'endpoint'] as const;

/** How a plugin runs. */
export type PluginKind = (typeof PLUGIN_KINDS)[number];

/** A plugin's kind, and for a process plugin the command ferryd starts (argv, as plugin.json writes it). */
export interface PluginTransport {
  kind: PluginKind;
  command?: string[];
}

/** Reads `kind` and `command` from DIR/plugin.json. Throws an Error naming the field when either is unusable. */
export function readTransport(pluginDir: string): PluginTransport {
  const file = join(pluginDir, 'plugin.json');
  let manifest: { kind?: unknown; command?: unknown };
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as typeof manifest;
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  const kind = manifest.kind ?? 'module';
  if (!PLUGIN_KINDS.includes(kind as PluginKind)) throw new Error(`${file}: "kind" must be one of ${PLUGIN_KINDS.join(', ')}, not ${JSON.stringify(kind)}`);
  if (kind !== 'process') return { kind: kind as PluginKind };
  const command = manifest.command;
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string' && a.length > 0)) {
    throw new Error(`${file}: a plugin of kind process needs "command": a non-empty array of non-empty strings, e.g. ["/usr/bin/python3", "driver.py"]`);
  }
  return { kind: 'process', command: command as string[] };
}
