#!/usr/bin/env node
// Boots host/serve-module.ts through tsx (a child's entry cannot be .ts):
//   node host/serve-module.mjs PLUGIN_DIR [--name NAME] [--listen ADDR]
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./serve-module.ts');
await main(process.argv.slice(2));
