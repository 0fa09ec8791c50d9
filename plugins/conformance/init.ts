/**
 * `ferry-conformance init DIR`: writes a new plugin folder from
 * plugins/template, with the plugin's name filled in and the imports of
 * Ferry's driver API and the kit's adapter types pointed at this checkout.
 */
import { existsSync, symlinkSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TEMPLATE_DIR = fileURLToPath(new URL('../template/', import.meta.url));
const PLUGINS_DIR = fileURLToPath(new URL('../', import.meta.url));

/** Thrown for a DIR or name init cannot use; the message is one line. */
export class InitError extends Error {
  override name = 'InitError';
}

/** What init wrote. */
export interface InitResult {
  dir: string;
  name: string;
  files: string[];
}

/** A plugin name from a folder name: lower-case, [a-z0-9._-]. */
export function nameFrom(dir: string): string {
  return basename(resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
}

/** Writes the template into `dir` (which must not exist or be empty) as plugin `name`. */
export function initPlugin(dir: string, name = nameFrom(dir)): InitResult {
  const target = resolve(dir);
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(name)) throw new InitError(`"${name}" is not a plugin name: use 1-64 lower-case letters, digits, ".", "_" or "-" (--name NAME)`);
  if (existsSync(target) && readdirSync(target).length > 0) throw new InitError(`${target} is not empty; init writes a new plugin folder`);
  mkdirSync(target, { recursive: true });
  const files: string[] = [];
  for (const file of readdirSync(TEMPLATE_DIR).sort()) {
    let text = readFileSync(join(TEMPLATE_DIR, file), 'utf8');
    if (file === 'plugin.json') {
      const manifest = JSON.parse(text) as Record<string, unknown>;
      text = `${JSON.stringify({ ...manifest, name, description: `A Ferry driver for ${name}.` }, null, 2)}\n`;
    } else if (file.endsWith('.ts')) {
      text = text
        .replaceAll("'../api/index.ts'", `'${importPath(target, join(PLUGINS_DIR, 'api', 'index.ts'))}'`)
        .replaceAll("'../conformance/adapter.ts'", `'${importPath(target, join(PLUGINS_DIR, 'conformance', 'adapter.ts'))}'`)
        .replaceAll('template: implement', `${name}: implement`)
        .replaceAll('YOUR ARRAY, from the template', `${name}, from the template`);
    }
    writeFileSync(join(target, file), text);
    files.push(file);
  }
  // Outside this repository nothing says the .ts files are ES modules; tsx would load them as CommonJS.
  writeFileSync(join(target, 'package.json'), `${JSON.stringify({ name: `ferry-driver-${name}`, version: '0.1.0', private: true, type: 'module' }, null, 2)}\n`);
  files.push('package.json');
  // For `npx tsc -p DIR`: the settings Ferry's own code is checked with (ferryd loads .ts through tsx, unchecked).
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, allowImportingTsExtensions: true, verbatimModuleSyntax: true, skipLibCheck: true, types: ['node'] },
    include: ['*.ts'],
  };
  writeFileSync(join(target, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);
  files.push('tsconfig.json');
  // Outside the checkout, the plugin's own imports (@grpc/grpc-js, ...) resolve from its node_modules: lend it Ferry's.
  const ferryModules = join(PLUGINS_DIR, '..', 'node_modules');
  if (!target.startsWith(resolve(PLUGINS_DIR, '..') + sep) && existsSync(ferryModules)) {
    symlinkSync(ferryModules, join(target, 'node_modules'), 'dir');
    files.push('node_modules -> ' + ferryModules);
  }
  return { dir: target, name, files };
}

/** A relative ESM import specifier from `fromDir` to `file`. */
function importPath(fromDir: string, file: string): string {
  const rel = relative(fromDir, file).split(sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}
