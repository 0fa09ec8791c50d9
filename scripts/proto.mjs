#!/usr/bin/env node
/**
 * Compiles the API description that every Ferry process loads, and checks it.
 *
 *   node scripts/proto.mjs build   proto/ (+ the gRPC health and reflection
 *                                  protos) -> build/api/ferry.binpb
 *   node scripts/proto.mjs check   buf lint, then buf breaking against the
 *                                  released API kept in proto/baseline/
 *   node scripts/proto.mjs baseline REF
 *                                  rewrites proto/baseline/ from git REF (run
 *                                  at a release, and commit the result)
 *
 * The descriptor set is what reflection serves byte for byte and what
 * proto-loader builds its service definitions from, so grpcurl, stubs
 * generated from proto/ and our own clients all see one compiled contract.
 * It is built, never committed: `npm install` (prepare), `npm test`,
 * `npm start` and `npm run sim` build it first.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const buf = join(dirname(require.resolve('@bufbuild/buf/package.json')), 'bin', 'buf');
const out = join(root, 'build', 'api');

/**
 * Protos we serve but do not own, each placed at its canonical import path
 * (`grpc/health/v1/health.proto`, not the path a package happens to ship it
 * under): a client whose pool already holds the canonical file would refuse
 * the same symbols from a second file name.
 */
const THIRD_PARTY = {
  'grpc/health/v1/health.proto': ['grpc-health-check/package.json', 'proto/health/v1/health.proto'],
  'grpc/reflection/v1/reflection.proto': ['@grpc/reflection/package.json', 'build/proto/grpc/reflection/v1/reflection.proto'],
  'grpc/reflection/v1alpha/reflection.proto': ['@grpc/reflection/package.json', 'build/proto/grpc/reflection/v1alpha/reflection.proto'],
};

function run(args, options = {}) {
  return execFileSync(buf, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...options });
}

function build() {
  const deps = join(out, 'deps');
  rmSync(out, { recursive: true, force: true });
  for (const [canonical, [pkg, file]] of Object.entries(THIRD_PARTY)) {
    const target = join(deps, canonical);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(join(dirname(require.resolve(pkg)), file), target);
  }
  // Two builds, one set: FileDescriptorSet is `repeated FileDescriptorProto
  // file = 1`, so two encoded sets concatenated are one set holding both.
  run(['build', '--as-file-descriptor-set', '-o', join(out, 'ferry-own.binpb')]);
  run(['build', deps, '--as-file-descriptor-set', '-o', join(out, 'deps.binpb')]);
  writeFileSync(join(out, 'ferry.binpb'), Buffer.concat([readFileSync(join(out, 'ferry-own.binpb')), readFileSync(join(out, 'deps.binpb'))]));
  rmSync(join(out, 'ferry-own.binpb'));
  rmSync(join(out, 'deps.binpb'));
  rmSync(deps, { recursive: true });
}

function check() {
  run(['lint']);
  run(['breaking', '--against', join(root, 'proto', 'baseline', 'released.binpb')]);
}

function baseline(ref) {
  if (!ref) throw new Error('usage: node scripts/proto.mjs baseline GIT_REF');
  const target = join(root, 'proto', 'baseline', 'released.binpb');
  mkdirSync(dirname(target), { recursive: true });
  run(['build', `${join(root, '.git')}#ref=${ref},subdir=proto`, '--exclude-source-info', '-o', target]);
}

const [command, arg] = process.argv.slice(2);
try {
  if (command === 'build') build();
  else if (command === 'check') check();
  else if (command === 'baseline') baseline(arg);
  else {
    process.stderr.write('usage: node scripts/proto.mjs build | check | baseline GIT_REF\n');
    process.exit(2);
  }
} catch (err) {
  process.stderr.write(`proto ${command}: ${err.status ? `buf exited ${err.status}` : err.message}\n`);
  process.exit(1);
}
