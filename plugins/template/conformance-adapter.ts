/**
 * The conformance kit's adapter for YOUR ARRAY: how the suite makes test
 * shares and looks at them, through your array's own API (never through
 * Ferry). ferry-conformance finds this file next to plugin.json. Read
 * docs/writing-a-driver.md, "The adapter"; plugins/simulator/conformance-adapter.ts
 * is a complete one.
 */
import type { AdapterSetup, ConformanceAdapter, ShareLocation } from '@ferry/conformance';

/** What your adapter reads from `ferry-conformance --config FILE` (the array's address, credentials, pools). */
interface AdapterConfig {
  endpoint?: string;
}

function unimplemented(call: string): Error {
  return new Error(`template: implement ${call} in conformance-adapter.ts`);
}

class TemplateAdapter implements ConformanceAdapter {
  constructor(private readonly config: AdapterConfig) {}

  /**
   * Start a test array (or point at one from this.config) that outlives
   * ferryd, and return two backends on it with the options your driver
   * needs, a source pool and a destination pool (and optionally a
   * smallPool, smaller than the test share, on the destination backend).
   */
  async setup(): Promise<AdapterSetup> {
    throw unimplemented('setup');
  }

  /** Create an empty share; return its id. */
  async createShare(_backend: string, _pool: string, _sizeBytes: number): Promise<string> {
    throw unimplemented('createShare');
  }

  /** Write through the array's data path, wherever the share lives now. */
  async writeShare(_shareId: string, _offset: number, _data: Uint8Array): Promise<void> {
    throw unimplemented('writeShare');
  }

  /** sha256 of the share's whole content, lower-case hex (read it back and hash it if the array has no checksum). */
  async checksum(_shareId: string): Promise<string> {
    throw unimplemented('checksum');
  }

  /** Where the share lives now, or null if there is no such share. */
  async locate(_shareId: string): Promise<ShareLocation | null> {
    throw unimplemented('locate');
  }

  /** The shares on the backend AND any migration destination there that is not a share yet. */
  async listShares(_backend: string): Promise<string[]> {
    throw unimplemented('listShares');
  }

  /** Delete the share wherever it lives, cancelling any job still holding it; resolve if it is gone. */
  async deleteShare(_shareId: string): Promise<void> {
    throw unimplemented('deleteShare');
  }

  /** Stop what setup started. */
  async teardown(): Promise<void> {}
}

/** Called by ferry-conformance with the parsed --config file ({} without one). */
export function createAdapter(config: Record<string, unknown>): ConformanceAdapter {
  return new TemplateAdapter(config as AdapterConfig);
}
