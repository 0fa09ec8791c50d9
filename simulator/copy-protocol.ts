/**
 * Messages between the copy pool (main thread) and its worker threads. Each
 * request carries an id; the worker answers it exactly once, with the
 * matching result or an `error`. Files are named by path: a worker opens
 * them itself, so share data never crosses the main thread.
 */

/**
 * How a block's content is summarised for verification. `crc32` (zlib's
 * CRC-32, 4 bytes) catches a block that did not land, landed elsewhere, was
 * torn or went stale, at a few GB/s per core; `sha256` (32 bytes) also
 * resists a writer crafting collisions, at about a fifth of the speed.
 */
export type BlockDigest = 'crc32' | 'sha256';

/** The size of one block digest. */
export const DIGEST_BYTES: Readonly<Record<BlockDigest, number>> = Object.freeze({ crc32: 4, sha256: 32 });

/** Runs of blocks: [first block, block count]. */
export type Runs = Array<[number, number]>;

/** Read `runs` from `src`, write them at the same offsets in `dst`, and digest each block written. */
export interface CopyRequest {
  type: 'copy';
  id: number;
  src: string;
  dst: string;
  runs: Runs;
  blockSize: number;
  digest: BlockDigest;
  /** The file size: the last block may be short. */
  fileSize: number;
  /** Skip writing all-zero runs (only where the destination is known to be still all zero). */
  skipZero: boolean;
  /**
   * Send a `progress` message for the pieces that landed, at most this often
   * (ms; 0: after every piece). Absent: only the result, at the end.
   */
  progressMs?: number;
}

/** Read `runs` from each of `paths` and digest each block (to verify, or to rebuild a dirty set after a crash). */
export interface HashRequest {
  type: 'hash';
  id: number;
  paths: string[];
  runs: Runs;
  blockSize: number;
  digest: BlockDigest;
  fileSize: number;
}

/** sha256 of a whole file, streamed. */
export interface ChecksumRequest {
  type: 'checksum';
  id: number;
  path: string;
  size: number;
}

/** Anything the pool sends a worker. */
export type WorkerRequest = CopyRequest | HashRequest | ChecksumRequest;

/** The hashes are the request's block digests, block after block in run order. */
export interface CopyResult {
  type: 'copied';
  id: number;
  /** Bytes read from the source. */
  bytes: number;
  /** Bytes written to the destination (less than `bytes` when zero runs were skipped). */
  written: number;
  hashes: ArrayBuffer;
}

/** One hash buffer per path, in the order of the request's paths. */
export interface HashResult {
  type: 'hashed';
  id: number;
  bytes: number;
  hashes: ArrayBuffer[];
}

/** A whole-file checksum. */
export interface ChecksumResult {
  type: 'checksum';
  id: number;
  sha256: string;
}

/**
 * Bytes of a copy request that landed on the destination since the last
 * progress message: sent before the request's result, never after it, and
 * summing to at most the result's `bytes`.
 */
export interface CopyProgress {
  type: 'progress';
  id: number;
  bytes: number;
}

/** The request failed; `code` is the errno code when there is one. */
export interface ErrorResult {
  type: 'error';
  id: number;
  message: string;
  code?: string;
}

/** Anything that answers a request: exactly one per request. */
export type WorkerResult = CopyResult | HashResult | ChecksumResult | ErrorResult;

/** Anything a worker sends: progress messages, then the request's result. */
export type WorkerMessage = WorkerResult | CopyProgress;
