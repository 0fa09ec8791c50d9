/**
 * How `ferry watch` and `ferry migrate` show a migration as it moves: a live
 * progress bar on a terminal (cli-progress), plain lines when stdout is a
 * pipe or a file, or one JSON object per line for scripts.
 *
 * Lines and JSON lines are printed on every change of state, and for
 * progress-only changes at most once per `intervalMs` (0: every one), so a
 * log file does not fill with a line per poll.
 */
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { TERMINAL, type Migration } from './client.ts';
import { averageRate, migrationHeader, migrationJson, progressLine, shortState } from './format.ts';
import { formatBytes, formatEta, formatPercent, formatRate } from '../lib/units.ts';

/** Where the updates of one migration go. */
export interface ProgressView {
  /** Shows one value of the migration. */
  update(m: Migration): void;
  /**
   * Runs `write`, which prints a message of its own (on stdout or stderr),
   * outside the live display: a bar is ended on its line first and drawn
   * again below the message, so neither is written over the other.
   */
  notice(write: () => void): void;
  /** Stops any live display (idempotent); the terminal is left on a fresh line. */
  stop(): void;
}

/** Which view: a bar for a terminal, lines for a pipe, JSON lines for scripts, or nothing. */
export type ViewKind = 'bar' | 'lines' | 'json' | 'none';

/** A view of the given kind writing to `out`. */
export function progressView(kind: ViewKind, out: Writable, intervalMs: number): ProgressView {
  switch (kind) {
    case 'bar':
      return new BarView(out);
    case 'lines':
      return new LineView(out, intervalMs, progressLine, true);
    case 'json':
      return new LineView(out, intervalMs, (m) => JSON.stringify(migrationJson(m)), false);
    case 'none':
      return { update() {}, notice: (write) => write(), stop() {} };
  }
}

/** Writes unless the stream was closed (a reader that went away, as `| head -1` does). */
function write(out: Writable, text: string): void {
  if (out.writable) out.write(text);
}

/** Prints a line per state change, and per progress change when `intervalMs` has passed. */
class LineView implements ProgressView {
  private lastState = '';
  private lastLine = '';
  private lastAt = 0;
  private headerDone = false;

  constructor(
    private readonly out: Writable,
    private readonly intervalMs: number,
    private readonly render: (m: Migration) => string,
    private readonly header: boolean,
  ) {}

  update(m: Migration): void {
    if (this.header && !this.headerDone) {
      this.headerDone = true;
      write(this.out, `${migrationHeader(m)}\n`);
    }
    const now = Date.now();
    const stateChanged = m.state !== this.lastState;
    if (!stateChanged && now - this.lastAt < this.intervalMs) return;
    const line = this.render(m);
    // The daemon also sends changes this view does not show (timestamps, rates below its precision).
    if (!stateChanged && line === this.lastLine) return;
    write(this.out, `${line}\n`);
    this.lastState = m.state;
    this.lastLine = line;
    this.lastAt = now;
  }

  notice(print: () => void): void {
    print();
  }

  stop(): void {}
}

interface BarPayload {
  state: string;
  detail: string;
}

/** The narrowest bar drawn, and the widest (the width cli-progress renders its bar strings for). */
const BAR_MIN = 10;
const BAR_MAX = 30;

/**
 * A one-line bar redrawn in place, under a line naming the migration: state,
 * bar, percent, bytes, throughput, ETA, dirty bytes; once the migration has
 * ended, its final figures and the summary line below it.
 */
class BarView implements ProgressView {
  private readonly bar: cliProgress.SingleBar;
  private live = false;
  private stopped = false;
  private last: Migration | undefined;
  private percent = 0;
  private payload: BarPayload | undefined;

  constructor(private readonly out: Writable) {
    this.bar = new cliProgress.SingleBar({
      stream: out,
      barsize: BAR_MAX,
      hideCursor: true,
      fps: 10,
      format: (options, params, payload: BarPayload) => {
        // As wide as the terminal allows: a line longer than the terminal is cut while the bar turns wrapping off.
        const barsize = Math.max(BAR_MIN, Math.min(BAR_MAX, params.maxWidth - payload.state.length - payload.detail.length - 3));
        return `${payload.state} ${cliProgress.Format.BarFormat(params.progress, { ...options, barsize })} ${payload.detail}`;
      },
    });
  }

  update(m: Migration): void {
    if (this.stopped) return;
    if (!this.last) write(this.out, `${migrationHeader(m)}\n`);
    this.last = m;
    const p = m.progress;
    const ended = TERMINAL.has(m.state);
    this.percent = p.percent;
    this.payload = {
      state: shortState(m.state).padEnd(11),
      detail: [
        formatPercent(p.percent).padStart(6),
        `${formatBytes(p.copiedBytes)}/${formatBytes(p.totalBytes)}`,
        // Nothing moves once it has ended: no ETA or dirty bytes, and the throughput is phase 1's average.
        ...(ended ? [averageRate(p)] : [formatRate(p.throughputBytesPerSec), `ETA ${formatEta(p.etaSeconds)}`, `dirty ${formatBytes(p.dirtyBytes)}`]),
      ].join(' | '),
    };
    if (!this.live) this.draw();
    else this.bar.update(p.percent, this.payload);
    if (ended) this.stop();
  }

  notice(print: () => void): void {
    const wasLive = this.live;
    this.end();
    print();
    if (wasLive && !this.stopped) this.draw();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.end();
    // The bar shows no error or cutover figures: say how it ended on a line of its own.
    if (this.last && TERMINAL.has(this.last.state)) write(this.out, `${progressLine(this.last)}\n`);
  }

  /** Starts the bar on the current line. */
  private draw(): void {
    if (!this.payload || !this.out.writable) return;
    this.live = true;
    this.bar.start(100, this.percent, this.payload);
  }

  /**
   * Ends the bar where it stands: cli-progress draws it one last time, turns
   * wrapping and the cursor back on, and moves to the next line.
   */
  private end(): void {
    if (!this.live) return;
    this.live = false;
    this.bar.stop();
  }
}
