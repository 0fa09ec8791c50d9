/**
 * How long the plugin host waits for a plugin: each driver call's deadline,
 * and the time a plugin may take to import and a driver to be created. The
 * daemon's config starts from these defaults; the conformance kit uses them
 * as they are, so a driver is held to the deadlines ferryd gives it.
 */

/** Per-call deadlines in milliseconds. */
export interface Deadlines {
  describe: number;
  checkCompatibility: number;
  start: number;
  continue: number;
  complete: number;
  cancel: number;
  progress: number;
  /** Each call of the host data path: a snapshot, a page of changed extents, one batch read or written, a freeze, a promote. */
  dataPath: number;
}

/** Defaults: short for calls that must return fast, long for the cutover. */
export const DEFAULT_DEADLINES: Deadlines = {
  describe: 5_000,
  checkCompatibility: 10_000,
  start: 30_000,
  continue: 5_000,
  complete: 300_000,
  cancel: 60_000,
  progress: 5_000,
  dataPath: 60_000,
};

/** How long a plugin may take to import, and a driver to be created, by default (ms). */
export const DEFAULT_PLUGIN_LOAD_TIMEOUT_MS = 10_000;

/** How often a backend's health (and a driver process's liveness) is probed, by default (ferryd's healthProbeMs). */
export const DEFAULT_HEALTH_PROBE_MS = 5_000;
