/**
 * A copy worker thread. It does the file I/O itself with synchronous calls
 * (blocking only this thread): sequential reads of about 1 MiB into one
 * reused buffer, writes at the same offsets, and a digest per block of what
 * it wrote, so the main thread can later verify the destination without a
 * second full read during the cutover.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import type { BlockDigest, ChecksumRequest, CopyProgress, CopyRequest, HashRequest, Runs, WorkerRequest, WorkerResult } from './copy-protocol.ts';
import { DIGEST_BYTES } from './copy-protocol.ts';

let buffer = Buffer.alloc(0);

function bufferOf(size: number): Buffer {
  if (buffer.length < size) buffer = Buffer.allocUnsafe(size);
  return buffer;
}

/** The byte range a run covers, the last block clipped to the file size. */
function span(run: [number, number], blockSize: number, fileSize: number): { offset: number; length: number } {
  const offset = run[0] * blockSize;
  const end = Math.min(fileSize, (run[0] + run[1]) * blockSize);
  return { offset, length: Math.max(0, end - offset) };
}

function readFully(fd: number, buf: Buffer, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) {
      buf.fill(0, done, length); // Past the end of a file reads as zeros, like the sparse tail it stands for.
      return;
    }
    done += n;
  }
}

function writeFully(fd: number, buf: Buffer, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, buf, done, length - done, position + done);
}

function hashBlocks(buf: Buffer, length: number, blockSize: number, digest: BlockDigest, out: Buffer, at: number): number {
  for (let off = 0; off < length; off += blockSize) {
    const block = buf.subarray(off, Math.min(length, off + blockSize));
    if (digest === 'crc32') out.writeUInt32LE(crc32(block), at);
    else createHash('sha256').update(block).digest().copy(out, at);
    at += DIGEST_BYTES[digest];
  }
  return at;
}

function blockCount(runs: Runs): number {
  return runs.reduce((n, r) => n + r[1], 0);
}

/**
 * Bytes moved per read/write pair: whole blocks, about PIECE_BYTES. Small
 * enough that what was read is still in the CPU cache when it is written
 * and digested, and that the kernel's readahead streams the rest of the
 * chunk from the disk while we copy; large enough that syscalls stay cheap.
 */
const PIECE_BYTES = 1024 * 1024;

function pieceSize(blockSize: number): number {
  return Math.max(1, Math.floor(PIECE_BYTES / blockSize)) * blockSize;
}

let zeros = Buffer.alloc(0);

function isZero(buf: Buffer, length: number): boolean {
  if (zeros.length < length) zeros = Buffer.alloc(length);
  return buf.subarray(0, length).equals(zeros.subarray(0, length)); // memcmp, not a JS loop
}

function copy(req: CopyRequest, report: (progress: CopyProgress) => void): WorkerResult {
  const hashes = Buffer.alloc(blockCount(req.runs) * DIGEST_BYTES[req.digest]);
  const src = openSync(req.src, 'r');
  let dst: number | undefined;
  let bytes = 0;
  let written = 0;
  // Progress as pieces land: a chunk on a slow disk takes long enough that "nothing, then all of it" shows as a stall.
  let reported = 0;
  let reportedAt = Date.now();
  const landed = () => {
    if (req.progressMs === undefined) return;
    const now = Date.now();
    if (now - reportedAt < req.progressMs) return;
    report({ type: 'progress', id: req.id, bytes: bytes - reported });
    reported = bytes;
    reportedAt = now;
  };
  try {
    dst = openSync(req.dst, 'r+');
    let at = 0;
    const step = pieceSize(req.blockSize);
    const total = req.runs.reduce((sum, run) => sum + span(run, req.blockSize, req.fileSize).length, 0);
    for (const run of req.runs) {
      const { offset, length } = span(run, req.blockSize, req.fileSize);
      for (let done = 0; done < length; done += step) {
        const n = Math.min(step, length - done);
        const buf = bufferOf(n);
        readFully(src, buf, n, offset + done);
        if (!(req.skipZero && isZero(buf, n))) {
          writeFully(dst, buf, n, offset + done);
          written += n;
        }
        at = hashBlocks(buf, n, req.blockSize, req.digest, hashes, at);
        bytes += n;
        if (bytes < total) landed(); // the last piece is told by the result itself
      }
    }
  } finally {
    closeSync(src);
    if (dst !== undefined) closeSync(dst);
  }
  const out = hashes.buffer.slice(hashes.byteOffset, hashes.byteOffset + hashes.length);
  return { type: 'copied', id: req.id, bytes, written, hashes: out };
}

function hash(req: HashRequest): WorkerResult {
  const total = blockCount(req.runs) * DIGEST_BYTES[req.digest];
  const results: ArrayBuffer[] = [];
  let bytes = 0;
  for (const file of req.paths) {
    const hashes = Buffer.alloc(total);
    const fd = openSync(file, 'r');
    try {
      let at = 0;
      const step = pieceSize(req.blockSize);
      for (const run of req.runs) {
        const { offset, length } = span(run, req.blockSize, req.fileSize);
        for (let done = 0; done < length; done += step) {
          const n = Math.min(step, length - done);
          const buf = bufferOf(n);
          readFully(fd, buf, n, offset + done);
          at = hashBlocks(buf, n, req.blockSize, req.digest, hashes, at);
          bytes += n;
        }
      }
    } finally {
      closeSync(fd);
    }
    results.push(hashes.buffer.slice(hashes.byteOffset, hashes.byteOffset + hashes.length));
  }
  return { type: 'hashed', id: req.id, bytes, hashes: results };
}

function checksum(req: ChecksumRequest): WorkerResult {
  const h = createHash('sha256');
  const fd = openSync(req.path, 'r');
  try {
    const piece = 4 * 1024 * 1024;
    for (let off = 0; off < req.size; off += piece) {
      const length = Math.min(piece, req.size - off);
      const buf = bufferOf(length);
      readFully(fd, buf, length, off);
      h.update(buf.subarray(0, length));
    }
  } finally {
    closeSync(fd);
  }
  return { type: 'checksum', id: req.id, sha256: h.digest('hex') };
}

function handle(req: WorkerRequest, report: (progress: CopyProgress) => void): WorkerResult {
  switch (req.type) {
    case 'copy':
      return copy(req, report);
    case 'hash':
      return hash(req);
    case 'checksum':
      return checksum(req);
  }
}

const port = parentPort;
if (!port) throw new Error('copy-worker.ts must run in a worker thread');
port.on('message', (req: WorkerRequest) => {
  let result: WorkerResult;
  try {
    result = handle(req, (progress) => port.postMessage(progress));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    result = { type: 'error', id: req.id, message: e.message, ...(e.code ? { code: e.code } : {}) };
  }
  const transfer = result.type === 'copied' ? [result.hashes] : result.type === 'hashed' ? result.hashes : [];
  port.postMessage(result, transfer);
});
