/**
 * Imports point one way. Every static and dynamic import of every source
 * file is read and resolved to the layer it lands in; an arrow the layering
 * does not allow fails this test, naming the file, the line and the rule.
 *
 *   lib/                 the floor: gRPC plumbing, logging, units; imports nothing of Ferry's
 *                        (build/types/, the message types generated from the compiled API, is part of it)
 *   plugins/api/         the driver API (@ferry/driver-api): imports nothing of Ferry's
 *   host/                the plugin host: loader, guard, deadlines, poll policy, admission
 *   client/              the migration API's client and the `ferry` CLI
 *   simulator/           the simulated array, a vendor's array: knows nothing of Ferry's driver API
 *   daemon/              ferryd; only daemon/embedded.ts may reach simulator/
 *   plugins/conformance/ the kit (@ferry/conformance): the host, the client, never daemon/
 *   plugins/simulator/   the reference driver: the driver API, its own array's client (and its
 *                        array's message types, generated into plugins/simulator/gen/)
 *   plugins/template/    what `ferry-conformance init` copies: the two packages only
 *
 * bin/, test/ and bench/ stand on top and may import anything.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers.ts';

/** The layers, longest prefix first, and what each may import (besides itself, Node's builtins and npm packages). */
const LAYERS: { layer: string; may: string[] }[] = [
  { layer: 'plugins/api', may: [] },
  { layer: 'plugins/conformance', may: ['lib', 'plugins/api', 'host', 'client'] },
  { layer: 'plugins/simulator', may: ['plugins/api', 'plugins/conformance'] },
  { layer: 'plugins/template', may: ['plugins/api', 'plugins/conformance'] },
  { layer: 'lib', may: [] },
  { layer: 'host', may: ['lib', 'plugins/api'] },
  { layer: 'client', may: ['lib'] },
  { layer: 'simulator', may: ['lib'] },
  { layer: 'daemon', may: ['lib', 'plugins/api', 'host'] },
];

/** One arrow that the layering allows for a single file: the composition point of ferryd and its embedded array. */
const SINGLE_EXCEPTIONS: Record<string, string> = { 'daemon/embedded.ts': 'simulator' };

/**
 * Generated folders, and the layer each belongs to. The message types that
 * scripts/proto.mjs generates from the compiled API are the floor's, as the
 * compiled API itself is (lib/api.ts).
 */
const GENERATED: Record<string, string> = { 'build/types': 'lib' };

/** The workspace packages, by the name they are imported as. */
const PACKAGES: Record<string, string> = { '@ferry/driver-api': 'plugins/api', '@ferry/conformance': 'plugins/conformance' };

function layerOf(path: string): string | undefined {
  const within = (prefix: string) => path === prefix || path.startsWith(`${prefix}/`);
  return LAYERS.find((l) => within(l.layer))?.layer ?? Object.entries(GENERATED).find(([folder]) => within(folder))?.[1];
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (name === 'node_modules') continue;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (/\.(ts|mts|mjs|js)$/.test(name)) out.push(rel);
  }
  return out;
}

/** Every import specifier in a file, with its line: `import … from 'x'`, `export … from 'x'`, `import('x')`, `import 'x'`. */
export function importsOf(text: string): { spec: string; line: number }[] {
  const found: { spec: string; line: number }[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    found.push({ spec, line: text.slice(0, m.index).split('\n').length + (m[0].startsWith('\n') ? 1 : 0) });
  }
  return found;
}

/** Where a specifier from `file` lands, repo-relative; undefined for builtins and npm packages. */
function target(file: string, spec: string): string | undefined {
  const pkg = Object.keys(PACKAGES).find((p) => spec === p || spec.startsWith(`${p}/`));
  if (pkg) return PACKAGES[pkg];
  if (!spec.startsWith('.')) return undefined;
  return relative(ROOT, resolve(ROOT, dirname(file), spec)).split(sep).join('/');
}

/** The arrows that break the layering, as "file:line imports spec (layer X may not import layer Y)". */
export function violations(files: { path: string; text: string }[]): string[] {
  const bad: string[] = [];
  for (const { path, text } of files) {
    const from = layerOf(path);
    if (from === undefined) continue;
    const rule = LAYERS.find((l) => l.layer === from)!;
    for (const { spec, line } of importsOf(text)) {
      const to = target(path, spec);
      if (to === undefined) continue;
      const toLayer = layerOf(to) ?? to.split('/')[0]!;
      if (toLayer === from || rule.may.includes(toLayer) || SINGLE_EXCEPTIONS[path] === toLayer) continue;
      bad.push(`${path}:${line} imports '${spec}' (${from}/ may import ${rule.may.length ? rule.may.map((l) => `${l}/`).join(', ') : 'nothing of Ferry'}, not ${toLayer}/)`);
    }
  }
  return bad;
}

const roots = ['lib', 'host', 'client', 'simulator', 'daemon', 'plugins'].filter((d) => existsSync(join(ROOT, d)));
const files = roots.flatMap(sources).map((path) => ({ path, text: readFileSync(join(ROOT, path), 'utf8') }));

test('every import in lib/, host/, client/, simulator/, daemon/ and plugins/ points down the layers', () => {
  assert.ok(files.length > 50, `found only ${files.length} source files`);
  assert.deepEqual(violations(files), []);
});

test('the import walk sees every form of import, and a wrong arrow fails it', () => {
  const planted = [
    { path: 'lib/x.ts', text: "import { Engine } from '../daemon/engine.ts';\n" },
    { path: 'client/x.ts', text: "const m = await import('../daemon/main.ts');\n" },
    { path: 'simulator/x.ts', text: "export { FerryError } from '../plugins/api/index.ts';\n" },
    { path: 'plugins/simulator/x.ts', text: "import type {\n  Log,\n} from '../../lib/log.ts';\n" },
    { path: 'plugins/conformance/x.ts', text: "import '../../daemon/main.ts';\n" },
    { path: 'daemon/x.ts', text: "import { SimArray } from '../simulator/index.ts';\n" },
    { path: 'host/x.ts', text: "import { Engine } from '../daemon/engine.ts';\n" },
    { path: 'plugins/api/x.ts', text: "import { FerryClient } from '../../client/client.ts';\n" },
    { path: 'plugins/simulator/y.ts', text: "import type { Migration } from '../../build/types/ferry/v1/Migration.ts';\n" },
  ];
  const found = violations(planted);
  assert.equal(found.length, planted.length, found.join('\n'));
  assert.match(found[3]!, /^plugins\/simulator\/x\.ts:1 imports '\.\.\/\.\.\/lib\/log\.ts' \(plugins\/simulator\/ may import plugins\/api\/, plugins\/conformance\/, not lib\/\)$/);
  assert.match(found[8]!, /plugins\/simulator\/ may import plugins\/api\/, plugins\/conformance\/, not lib\/\)$/);
  const allowed = [
    { path: 'daemon/embedded.ts', text: "import('../simulator/index.ts');\n" },
    { path: 'daemon/y.ts', text: "import { x } from '@ferry/driver-api';\n" },
    { path: 'client/y.ts', text: "import type { Migration } from '../build/types/ferry/v1/Migration.ts';\n" },
    { path: 'plugins/simulator/z.ts', text: "import type { Job } from './gen/ferry/simulator/v1/Job.ts';\n" },
  ];
  assert.deepEqual(violations(allowed), []);
});
