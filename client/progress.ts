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
import { formatBytes, formatEta, formatPercent, formatRate, migrationJson, progressLine, shortState } from './format.ts';

/** Where the updates of one migration go. */
export interface ProgressView {
  /** Shows one value of the migration. */
  update(m: Migration): void;
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
      return { update() {}, stop() {} };
  }
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
      this.out.write(`migration ${m.id}: ${m.share.backend}/${m.share.shareId} -> ${m.destination}\n`);
    }
    const now = Date.now();
    const stateChanged = m.state !== this.lastState;
    if (!stateChanged && now - this.lastAt < this.intervalMs) return;
    const line = this.render(m);
    // The daemon also sends changes this view does not show (timestamps, rates below its precision).
    if (!stateChanged && line === this.lastLine) return;
    this.out.write(`${line}\n`);
    this.lastState = m.state;
    this.lastLine = line;
    this.lastAt = now;
  }

  stop(): void {}
}

interface BarPayload {
  state: string;
  detail: string;
}

/** A one-line bar redrawn in place: state, bar, percent, bytes, throughput, ETA, dirty bytes. */
class BarView implements ProgressView {
  private readonly bar: cliProgress.SingleBar;
  private started = false;
  private stopped = false;
  private last: Migration | undefined;

  constructor(private readonly out: Writable) {
    this.bar = new cliProgress.SingleBar({
      stream: out,
      barsize: 30,
      hideCursor: true,
      fps: 10,
      format: (options, params, payload: BarPayload) => `${payload.state} ${cliProgress.Format.BarFormat(params.progress, options)} ${payload.detail}`,
    });
  }

  update(m: Migration): void {
    if (this.stopped) return;
    this.last = m;
    const p = m.progress;
    const payload: BarPayload = {
      state: shortState(m.state).padEnd(11),
      detail: [
        formatPercent(p.percent).padStart(6),
        `${formatBytes(p.copiedBytes)}/${formatBytes(p.totalBytes)}`,
        formatRate(p.throughputBytesPerSec),
        `ETA ${formatEta(p.etaSeconds)}`,
        `dirty ${formatBytes(p.dirtyBytes)}`,
      ].join(' | '),
    };
    if (!this.started) {
      this.started = true;
      this.bar.start(100, p.percent, payload);
    } else this.bar.update(p.percent, payload);
    if (TERMINAL.has(m.state)) this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.started) this.bar.stop();
    // The bar shows no error or cutover figures: say how it ended on a line of its own.
    if (this.last && TERMINAL.has(this.last.state)) this.out.write(`${progressLine(this.last)}\n`);
  }
}
