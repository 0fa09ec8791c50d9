/** A counting semaphore (the engine's bound on driver calls in flight, the mover's on batches in memory). Waiters are served first come, first served. */
export class Semaphore {
  private readonly queue: (() => void)[] = [];
  private free: number;

  constructor(
    /** How many may hold it at once. */
    readonly capacity: number,
  ) {
    this.free = capacity;
  }

  /** How many hold it now. */
  get held(): number {
    return this.capacity - this.free;
  }

  /** How many wait for it now. */
  get waiting(): number {
    return this.queue.length;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.queue.push(resolve));
  }

  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}
