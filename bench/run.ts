/**
 * `npm run bench`: every scenario, one after the other, each measured next
 * to what a user would do instead, in the same run.
 *
 *   npm run bench                      the full run (about 15 minutes)
 *   npm run bench -- --quick           small versions of everything (under 2 minutes)
 *   npm run bench -- --only copy,cutover
 *   npm run bench -- --list
 *
 * Each scenario prints its tables as it finishes and writes
 * bench/results/<scenario>-<stamp>.json; at the end the summary (Markdown)
 * goes to stdout and to bench/results/summary-<stamp>.md, and the freeze
 * chart to bench/results/freeze-<stamp>.png and the many-migrations chart
 * to bench/results/many-<stamp>.png. Exit code 1 if a scenario
 * failed (the others still run); targets missed are reported, not failed.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { drawFreezeChart, drawGrowthChart } from './lib/chart.ts';
import { describeMachine, markdown, RESULTS_DIR, writeResult, type BenchContext, type Scenario, type ScenarioReport, type SummaryRow, type TargetCheck } from './lib/report.ts';
import { accessScenario } from './scenarios/access.ts';
import { copyScenario } from './scenarios/copy.ts';
import { cutoverScenario, type CutoverData } from './scenarios/cutover.ts';
import { driverCallScenario } from './scenarios/driver-call.ts';
import { hostPathScenario } from './scenarios/host-path.ts';
import { manyScenario, type ManyData } from './scenarios/many.ts';
import { phase1SeenScenario } from './scenarios/phase1-seen.ts';
import { recoveryScenario } from './scenarios/recovery.ts';

const SCENARIOS: Scenario[] = [copyScenario, cutoverScenario, phase1SeenScenario, manyScenario, recoveryScenario, driverCallScenario, hostPathScenario, accessScenario];

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (flags.help || flags.list) {
  process.stdout.write(`usage: npm run bench [-- --quick] [--only ${SCENARIOS.map((s) => s.name).join(',')}]\n\n`);
  for (const s of SCENARIOS) process.stdout.write(`  ${s.name.padEnd(12)} ${s.title}\n`);
  process.exit(0);
}

const wanted = flags.only ? flags.only.split(',').map((s) => s.trim()).filter(Boolean) : SCENARIOS.map((s) => s.name);
const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})\n`);
  process.exit(2);
}

/** The flags this run was given, as the summary's command line shows them. */
const benchArgs = [flags.quick ? '--quick' : '', flags.only ? `--only ${flags.only}` : ''].filter(Boolean).join(' ');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
// Scratch files live in the system temp dir: on this kind of machine it is the same disk as everything else.
const scratch = mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-'));
const t0 = Date.now();
const log = (line: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
const ctx: BenchContext = { quick: flags.quick, stamp, scratch, log };
const machine = describeMachine(scratch);

const reports = new Map<string, ScenarioReport>();
const failures: string[] = [];
const stopping = () => {
  rmSync(scratch, { recursive: true, force: true });
  process.exit(130);
};
process.once('SIGINT', stopping);
process.once('SIGTERM', stopping);

log(`Ferry benchmarks${flags.quick ? ' (--quick)' : ''}: ${wanted.join(', ')}; scratch ${scratch}`);
log(`machine: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, ${machine.disk}, ${machine.kernel}, ${machine.hypervisor}; Node ${machine.node}; commit ${machine.commit}`);
try {
  for (const scenario of SCENARIOS.filter((s) => wanted.includes(s.name))) {
    const started = Date.now();
    log(`== ${scenario.name}: ${scenario.title}`);
    try {
      const report = await scenario.run(ctx);
      reports.set(scenario.name, report);
      const seconds = (Date.now() - started) / 1000;
      const file = writeResult(scenario.name, stamp, { scenario: scenario.name, title: scenario.title, quick: flags.quick, machine, seconds, tables: report.tables, targets: report.targets, data: report.data });
      process.stdout.write(`\n${report.tables.map((t) => markdown(t)).join('\n\n')}\n\n`);
      log(`${scenario.name} done in ${seconds.toFixed(0)} s; wrote ${path.relative(process.cwd(), file)}`);
    } catch (err) {
      failures.push(scenario.name);
      log(`${scenario.name} FAILED: ${(err as Error).stack ?? String(err)}`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const summary: SummaryRow[] = [...reports.values()].flatMap((r) => r.summary);
const targets: TargetCheck[] = [...reports.values()].flatMap((r) => r.targets);
const charts: string[] = [];
/** Draws one chart; a failure is reported and fails the run, the others still drawn. */
async function chart(name: string, draw: () => Promise<string>): Promise<void> {
  try {
    charts.push(await draw());
  } catch (err) {
    log(`${name} chart FAILED: ${(err as Error).message}`);
    failures.push(`${name} chart`);
  }
}
const cutover = reports.get('cutover')?.data as CutoverData | undefined;
if (cutover) await chart('freeze', () => drawFreezeChart(cutover, path.join(RESULTS_DIR, `freeze-${stamp}.png`)));
const many = reports.get('many')?.data as ManyData | undefined;
if (many) await chart('many', () => drawGrowthChart(many.growth, many.growthSubtitle, path.join(RESULTS_DIR, `many-${stamp}.png`)));
const minutes = (Date.now() - t0) / 60_000;
const md = [
  `## Ferry benchmarks${flags.quick ? ' (--quick)' : ''}`,
  '',
  `Machine: ${machine.cores} cores (${machine.cpuModel}, ${machine.hypervisor}), ${machine.memoryGiB} GiB memory, ${machine.disk}; ${machine.kernel}; Node ${machine.node}; commit ${machine.commit}. ` +
    `Command: \`npm run bench${benchArgs ? ` -- ${benchArgs}` : ''}\`, ${minutes.toFixed(1)} minutes.`,
  '',
  markdown({ title: 'Summary', header: ['scenario', 'measure', 'Ferry', 'baseline (same run)', 'ratio'], rows: summary.map((r) => [r.scenario, r.measure, r.ferry, r.baseline, r.ratio]) }, { title: false }),
  '',
  markdown({ title: 'Targets', header: ['target', 'measured', 'met'], rows: targets.map((t) => [t.target, t.measured, t.met === null ? 'not measured at this size' : t.met ? 'yes' : 'NO']) }, { title: false }),
  ...(charts.length ? ['', `Charts: ${charts.map((c) => path.relative(process.cwd(), c)).join(', ')}`] : []),
  ...(failures.length ? ['', `FAILED: ${failures.join(', ')}`] : []),
  '',
].join('\n');
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(path.join(RESULTS_DIR, `summary-${stamp}.md`), md);
process.stdout.write(`\n${md}`);
process.exitCode = failures.length ? 1 : 0;
