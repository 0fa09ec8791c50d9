/**
 * `ferry-conformance init DIR [--kind module|process]`: writes a new plugin
 * folder from a template, with the plugin's name filled in.
 *
 * `--kind process` (plugins/template-process): plugin.json of kind process
 * with the command ["/usr/bin/python3", "driver.py"], and driver.py, a
 * Python driver whose every call answers UNIMPLEMENTED; it generates its
 * stubs at start from the protos of this checkout (or FERRY_PROTO_PATH).
 * Nothing is installed.
 *
 * `--kind module` (the default, plugins/template): the plugin is a package
 * of its own: it imports Ferry's driver API as `@ferry/driver-api` and the
 * kit's adapter types as `@ferry/conformance`, both `file:` dependencies on
 * this checkout that npm installs into the plugin's node_modules, so the
 * folder may live (and be moved) anywhere; after a move, `npm install` in it
 * again relinks them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const TEMPLATE_DIR = fileURLToPath(new URL('../template/', import.meta.url));
const PROCESS_TEMPLATE_DIR = fileURLToPath(new URL('../template-process/', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

/** The kinds init writes a template for. */
export const INIT_KINDS = ['module', 'process'] as const;

/** A kind init writes a template for. */
export type InitKind = (typeof INIT_KINDS)[number];
const PLUGINS_DIR = fileURLToPath(new URL('../', import.meta.url));
const FERRY_PACKAGE = fileURLToPath(new URL('../../package.json', import.meta.url));

/** Thrown for a DIR or name init cannot use; the message is one line. */
export class InitError extends Error {
  override name = 'InitError';
}

/** What init wrote, and how its `npm install` went. */
export interface InitResult {
  dir: string;
  name: string;
  files: string[];
  /** Absent with `install: false`; else npm's exit status and the tail of its stderr. */
  install?: { ok: boolean; detail: string };
}

/** A plugin name from a folder name: lower-case, [a-z0-9._-]. */
export function nameFrom(dir: string): string {
  return basename(resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
}

/** The version Ferry itself pins for a dev dependency, so that the plugin type-checks with the same compiler. */
function ferryDevVersion(name: string): string {
  const pkg = JSON.parse(readFileSync(FERRY_PACKAGE, 'utf8')) as { devDependencies: Record<string, string> };
  const version = pkg.devDependencies[name];
  if (version === undefined) throw new Error(`Ferry's package.json has no devDependency ${name}`);
  return version;
}

/** The plugin's package.json: an ES module package that depends on Ferry's driver API by name. */
function packageJson(name: string): string {
  const pkg = {
    name: `ferry-driver-${name}`,
    version: '0.1.0',
    private: true,
    type: 'module',
    description: `A Ferry driver for ${name}.`,
    scripts: { typecheck: 'tsc -p .' },
    dependencies: { '@ferry/driver-api': `file:${join(PLUGINS_DIR, 'api')}` },
    devDependencies: {
      '@ferry/conformance': `file:${join(PLUGINS_DIR, 'conformance')}`,
      '@types/node': ferryDevVersion('@types/node'),
      typescript: ferryDevVersion('typescript'),
    },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/** For `npm run typecheck`: the settings Ferry's own code is checked with (ferryd loads .ts through tsx, unchecked). */
const TSCONFIG = {
  compilerOptions: { target: 'ES2022', lib: ['ES2023'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, allowImportingTsExtensions: true, verbatimModuleSyntax: true, skipLibCheck: true, types: ['node'] },
  include: ['*.ts'],
};

/**
 * Writes the template of `kind` into `dir` (which must not exist or be
 * empty) as plugin `name`; for a module plugin, then runs `npm install` in
 * it unless `install` is false.
 */
export function initPlugin(dir: string, name = nameFrom(dir), install = true, kind: InitKind = 'module'): InitResult {
  const target = resolve(dir);
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(name)) throw new InitError(`"${name}" is not a plugin name: use 1-64 lower-case letters, digits, ".", "_" or "-" (--name NAME)`);
  if (!INIT_KINDS.includes(kind)) throw new InitError(`--kind ${kind}: init writes a template for ${INIT_KINDS.join(' or ')} (an endpoint driver is served elsewhere; start from the process template)`);
  if (existsSync(target) && readdirSync(target).length > 0) throw new InitError(`${target} is not empty; init writes a new plugin folder`);
  mkdirSync(target, { recursive: true });
  if (kind === 'process') return { dir: target, name, files: writeProcessTemplate(target, name) };
  const files: string[] = [];
  for (const file of readdirSync(TEMPLATE_DIR).sort()) {
    let text = readFileSync(join(TEMPLATE_DIR, file), 'utf8');
    if (file === 'plugin.json') {
      const manifest = JSON.parse(text) as Record<string, unknown>;
      text = `${JSON.stringify({ ...manifest, name, description: `A Ferry driver for ${name}.` }, null, 2)}\n`;
    } else if (file.endsWith('.ts')) {
      text = text.replaceAll('template: implement', `${name}: implement`).replaceAll('YOUR ARRAY, from the template', `${name}, from the template`);
    }
    writeFileSync(join(target, file), text);
    files.push(file);
  }
  writeFileSync(join(target, 'package.json'), packageJson(name));
  writeFileSync(join(target, 'tsconfig.json'), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
  files.push('package.json', 'tsconfig.json');
  if (!install) return { dir: target, name, files };
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: target, encoding: 'utf8' });
  const detail = npm.error ? npm.error.message : (npm.stderr.trim().split('\n').slice(-3).join(' | ') || `npm exited ${npm.status}`);
  return { dir: target, name, files, install: { ok: npm.status === 0, detail } };
}

/** The Python template: plugin.json with the name, driver.py with the name and this checkout's proto/ as its default FERRY_PROTO_PATH. */
function writeProcessTemplate(target: string, name: string): string[] {
  const files: string[] = [];
  // Files only: a __pycache__ left by running the template in place is not part of it.
  const names = readdirSync(PROCESS_TEMPLATE_DIR, { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
  for (const file of names.sort()) {
    let text = readFileSync(join(PROCESS_TEMPLATE_DIR, file), 'utf8');
    if (file === 'plugin.json') {
      const manifest = JSON.parse(text) as Record<string, unknown>;
      text = `${JSON.stringify({ ...manifest, name, description: `A Ferry driver for ${name}.` }, null, 2)}\n`;
    } else if (file === 'driver.py') {
      text = text.replace('PLUGIN_NAME = "template"', `PLUGIN_NAME = ${JSON.stringify(name)}`).replace('@FERRY_PROTO_PATH@', PROTO_DIR).replace('YOUR ARRAY, from the template', `${name}, from the template`);
    }
    writeFileSync(join(target, file), text);
    files.push(file);
  }
  return files;
}
