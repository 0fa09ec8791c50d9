/**
 * What ferry-conformance passes to the node:test process it runs the suite
 * in (node-entry.ts): one JSON value in an environment variable.
 */

import type { AdapterChoice } from './kit-adapter.ts';

/** The environment variable that carries the RunSpec, as JSON. */
export const RUN_ENV = 'FERRY_CONFORMANCE_RUN';

/** What the command asks the suite to run. */
export interface RunSpec {
  /** The plugin folder. */
  plugin: string;
  /** Where the adapter comes from. */
  adapter: AdapterChoice;
  /** Given to createAdapter. */
  config: Record<string, unknown>;
  repeat: number;
  shareSizeBytes: number;
  /** Only these checks, when set. */
  checks?: string[];
}
