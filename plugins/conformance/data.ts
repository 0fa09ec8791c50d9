/**
 * Test data: deterministic bytes the kit writes and the checksums it
 * expects back, so that "no data lost" is a comparison, not a guess.
 */
import { createHash, randomBytes } from 'node:crypto';

/** The most the kit writes in one adapter.writeShare call. */
export const MAX_WRITE_BYTES = 1024 * 1024;

/** Deterministic bytes: sha256 in counter mode of `seed`. */
export function pattern(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0, i = 0; at < length; at += 32, i++) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, at);
  return out;
}

/** sha256, lower-case hex. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A short random suffix for names the kit makes up. */
export function randomSuffix(): string {
  return randomBytes(4).toString('hex');
}

/** "4 MiB", "512 KiB", "300 B". */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}
