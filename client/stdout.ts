/**
 * The CLI's stdout, watched for a reader that goes away (`ferry watch ID
 * --json | head -1`) and for other write failures, so that the command can
 * end the way a Unix tool does instead of dying on an unhandled 'error'.
 */
import type { Writable } from 'node:stream';

/**
 * Watches stdout for a reader that went away. A write to a closed pipe fails
 * with EPIPE (Node ignores SIGPIPE, which would end a C tool quietly): the
 * command stops as that tool would, without a stack and with exit 0.
 */
export class StdoutWatch {
  private readonly gone = new AbortController();
  private failure: Error | undefined;
  private readonly onError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') this.failure ??= err;
    this.gone.abort();
  };

  constructor(private readonly stdout: Writable) {
    stdout.on('error', this.onError);
  }

  /** Aborted when stdout failed. */
  get signal(): AbortSignal {
    return this.gone.signal;
  }

  /** True when stdout's reader went away. */
  readerGone(): boolean {
    return this.gone.signal.aborted && !this.failure;
  }

  /** A failure of stdout other than a reader going away (a full disk, say), if any. */
  get error(): Error | undefined {
    return this.failure;
  }

  /**
   * Waits until what was written so far is handed over (or failed), so that
   * a closed reader is known before the exit code is chosen. The stream
   * emits 'error' just after the write's callback: hence the setImmediate.
   */
  flushed(): Promise<void> {
    if (this.gone.signal.aborted || !this.stdout.writable) return Promise.resolve();
    return new Promise((resolve) => this.stdout.write('', () => setImmediate(resolve)));
  }

  /** Stops watching. */
  close(): void {
    this.stdout.off('error', this.onError);
  }
}
