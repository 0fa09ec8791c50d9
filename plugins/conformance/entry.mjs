// The file ferry-conformance gives node:test's run(): the test process it
// starts does not have tsx, so register it here, then load the real entry.
import { register } from 'tsx/esm/api';

register();
await import('./node-entry.ts');
