/**
 * Test data: incompressible, non-zero bytes (an AES-CTR keystream), so that
 * neither sparse files, zero-skipping nor compression flatter anyone, made
 * at a few GB/s.
 */
import { createCipheriv } from 'node:crypto';
import { open } from 'node:fs/promises';

const MiB = 2 ** 20;

/** `length` bytes of the stream named `seed`, starting at byte `offset` (a multiple of 16). */
export function content(offset: number, length: number, seed = 7): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(offset / 16), 8);
  return createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), iv).update(Buffer.alloc(length));
}

/** Writes `size` bytes of stream `seed` over `file` (created if missing, never truncated) and fdatasyncs it. */
export async function fillFile(file: string, size: number, seed = 7): Promise<void> {
  const fh = await open(file, 'a+').then(async (h) => (await h.close(), open(file, 'r+')));
  try {
    for (let off = 0; off < size; off += 8 * MiB) {
      const piece = content(off, Math.min(8 * MiB, size - off), seed);
      await fh.write(piece, 0, piece.length, off);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
