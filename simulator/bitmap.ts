/**
 * A fixed-size set of block indexes, one bit each, with a live count. Jobs
 * keep three: dirty (to copy again), copied (pass 1's progress) and verified
 * (read back from the destination and matched against the copy's hash).
 */
export class Bitmap {
  /** How many indexes the bitmap covers. */
  readonly size: number;
  private words: Uint32Array;
  private setCount = 0;

  constructor(size: number) {
    this.size = size;
    this.words = new Uint32Array(Math.ceil(size / 32));
  }

  /** How many bits are set. */
  get count(): number {
    return this.setCount;
  }

  /** Whether bit `i` is set. */
  has(i: number): boolean {
    return ((this.words[i >>> 5]! >>> (i & 31)) & 1) === 1;
  }

  /** Sets bit `i`; returns true if it was clear. */
  set(i: number): boolean {
    const w = i >>> 5;
    const mask = 1 << (i & 31);
    const word = this.words[w]!;
    if ((word & mask) !== 0) return false;
    this.words[w] = word | mask;
    this.setCount++;
    return true;
  }

  /** Clears bit `i`; returns true if it was set. */
  clear(i: number): boolean {
    const w = i >>> 5;
    const mask = 1 << (i & 31);
    const word = this.words[w]!;
    if ((word & mask) === 0) return false;
    this.words[w] = word & ~mask;
    this.setCount--;
    return true;
  }

  /** Sets every bit in [from, to). */
  setRange(from: number, to: number): void {
    for (let i = from; i < to; i++) this.set(i);
  }

  /** Clears every bit. */
  clearAll(): void {
    this.words.fill(0);
    this.setCount = 0;
  }

  /** The bits as bytes, to persist. */
  toBuffer(): Buffer {
    return Buffer.from(this.words.buffer, this.words.byteOffset, this.words.byteLength);
  }

  /** A bitmap of `size` bits read from `toBuffer`'s bytes. */
  static fromBuffer(size: number, bytes: Uint8Array): Bitmap {
    const bitmap = new Bitmap(size);
    new Uint8Array(bitmap.words.buffer).set(bytes.subarray(0, bitmap.words.byteLength));
    let n = 0;
    for (const w of bitmap.words) n += popcount(w);
    bitmap.setCount = n;
    return bitmap;
  }

  /** A copy. */
  clone(): Bitmap {
    return Bitmap.fromBuffer(this.size, this.toBuffer());
  }

  /** The set indexes in ascending order, and clears them all: a pass's snapshot of the dirty set. */
  drain(): number[] {
    const out = this.list(0, this.size, Infinity, true);
    this.clearAll();
    return out;
  }

  /**
   * Up to `limit` indexes in [from, to) whose bit equals `wanted`, ascending.
   * Skips whole words that cannot match, so sparse scans are cheap.
   */
  list(from: number, to: number, limit: number, wanted: boolean): number[] {
    const out: number[] = [];
    let i = from;
    while (i < to && out.length < limit) {
      const w = i >>> 5;
      const word = this.words[w]!;
      if ((i & 31) === 0 && (wanted ? word === 0 : word === 0xffffffff) && i + 32 <= to) {
        i += 32;
        continue;
      }
      if (this.has(i) === wanted) out.push(i);
      i++;
    }
    return out;
  }
}

function popcount(w: number): number {
  w = w - ((w >>> 1) & 0x55555555);
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Groups ascending block indexes into runs [start, count], no run longer than `maxRun`. */
export function toRuns(blocks: readonly number[], maxRun: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const b of blocks) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === b && last[1] < maxRun) last[1]++;
    else runs.push([b, 1]);
  }
  return runs;
}
