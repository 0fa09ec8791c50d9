/**
 * The benchmark's pictures: cutover freeze time against write rate, Ferry
 * beside stop-and-copy and rsync, on a log scale (they are orders of
 * magnitude apart); and how ferryd's cost grows with the number of
 * migrations. Drawn with Vega-Lite (compiled to a Vega view, rendered to SVG
 * without a browser or canvas) and rasterised to PNG by resvg, whose
 * prebuilt binary comes from the npm registry as an optional dependency.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { CutoverData } from '../scenarios/cutover.ts';
import type { GrowthPoint } from '../scenarios/many.ts';
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
  return renderPng(spec, file);
}

/** Draws ferryd's cost against the number of migrations (log x axis; `subtitle`, one line each, says what was run) to `file` (PNG); returns the path. */
export async function drawGrowthChart(points: readonly GrowthPoint[], subtitle: readonly string[], file: string): Promise<string> {
  const values = points.flatMap((p) => [
    { migrations: p.migrations, panel: 'cpu-rush', series: 'rush', value: p.cpuMsPerMigrationRush },
    { migrations: p.migrations, panel: 'cpu-steady', series: 'steady', value: p.cpuUsPerMigrationSecondSteady },
    { migrations: p.migrations, panel: 'get', series: 'while they start (rush)', value: p.getP99RushMs },
    { migrations: p.migrations, panel: 'get', series: 'all parked (steady)', value: p.getP99SteadyMs },
  ]).filter((v) => Number.isFinite(v.value) && v.value > 0);
  const x = { field: 'migrations', type: 'quantitative', scale: { type: 'log' }, title: 'migrations (log scale)', axis: { values: points.map((p) => p.migrations), format: ',d' } } as const;
  const panel = (name: string, title: string, yTitle: string, color: string) => ({
    title,
    width: 420,
    height: 180,
    transform: [{ filter: `datum.panel === '${name}'` }],
    mark: { type: 'line', point: { size: 60, filled: true, color }, strokeWidth: 2, color },
    encoding: { x, y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: yTitle } },
  });
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'ferryd cost against the number of migrations', subtitle: [`${subtitle[0] ?? ''}; log scales`, ...subtitle.slice(1)] },
    background: 'white',
    data: { values },
    vconcat: [
      panel('cpu-rush', 'CPU per migration while they start (rush)', 'CPU ms per migration', '#1f77b4'),
      panel('cpu-steady', 'CPU per parked migration (steady, all PHASE1_DONE)', 'CPU µs per migration per s', '#2ca02c'),
      {
        title: 'GetMigration p99 (open loop)',
        width: 420,
        height: 180,
        transform: [{ filter: "datum.panel === 'get'" }],
        mark: { type: 'line', point: { size: 60 }, strokeWidth: 2 },
        encoding: {
          x,
          y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: 'ms' },
          color: { field: 'series', type: 'nominal', title: null, sort: ['while they start (rush)', 'all parked (steady)'], scale: { range: ['#d62728', '#ff7f0e'] }, legend: { orient: 'bottom', labelLimit: 260 } },
        },
      },
    ],
  } as TopLevelSpec;
  return renderPng(spec, file);
}

/** Renders a Vega-Lite spec to `file` as PNG (twice the spec's size); returns the path. */
async function renderPng(spec: TopLevelSpec, file: string): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, png);
  return file;
}
