#!/usr/bin/env node
// Boots plugins/conformance/wire-shim.ts through tsx (a child's entry cannot be .ts):
//   node plugins/conformance/wire-shim.mjs --control URL --dir PLUGIN_DIR -- COMMAND...
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./wire-shim.ts');
try {
  await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
