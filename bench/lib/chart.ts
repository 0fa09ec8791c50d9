/**
 * The benchmark's picture: cutover freeze time against write rate, Ferry
 * beside stop-and-copy and rsync, on a log scale (they are orders of
 * magnitude apart). Drawn with Vega-Lite (compiled to a Vega view, rendered
 * to SVG without a browser or canvas) and rasterised to PNG by resvg, whose
 * prebuilt binary comes from the npm registry as an optional dependency.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { CutoverData } from '../scenarios/cutover.ts';
import { median } from './stats.ts';

/** Draws the freeze chart of a cutover run to `file` (PNG); returns the path. */
export async function drawFreezeChart(data: CutoverData, file: string): Promise<string> {
  const points: Array<{ rate: string; ms: number; series: string }> = [];
  for (const r of data.rates) {
    const rate = `${r.rateMiBps}`;
    points.push({ rate, ms: r.ferry.p99, series: 'Ferry cutover, p99' });
    points.push({ rate, ms: r.ferry.median, series: 'Ferry cutover, median' });
    if (r.stopAndCopyMs.length) points.push({ rate, ms: median(r.stopAndCopyMs), series: 'stop-and-copy (cp + fdatasync)' });
    if (r.rsyncFinalMs.length) points.push({ rate, ms: median(r.rsyncFinalMs), series: 'rsync final pass (+ fdatasync)' });
  }
  const sizeGiB = data.sizeBytes / 2 ** 30;
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Writes frozen during the switch, ${sizeGiB >= 1 ? `${sizeGiB} GiB` : `${data.sizeBytes / 2 ** 20} MiB`} share`,
      subtitle: `64 KiB random writes; Ferry: ${data.cutoversPerRate} cutovers per rate; log scale`,
    },
    width: 520,
    height: 320,
    background: 'white',
    data: { values: points },
    mark: { type: 'line', point: { size: 60 }, strokeWidth: 2 },
    encoding: {
      x: { field: 'rate', type: 'ordinal', sort: null, title: 'write rate during the migration (MiB/s)', axis: { labelAngle: 0 } },
      y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'writes frozen (ms, log scale)' },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        sort: ['Ferry cutover, p99', 'Ferry cutover, median', 'stop-and-copy (cp + fdatasync)', 'rsync final pass (+ fdatasync)'],
        scale: { range: ['#1f77b4', '#9ecae1', '#d62728', '#ff7f0e'] },
        legend: { orient: 'bottom', columns: 2, labelLimit: 260 },
      },
    },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, png);
  return file;
}
