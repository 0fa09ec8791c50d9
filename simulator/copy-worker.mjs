// Worker entry for the copy pool. Node 20 cannot start a .ts worker under
// tsx directly, so this bootstrap registers tsx in the worker's own thread
// and then loads the real worker.
import { register } from 'tsx/esm/api';

register();
await import('./copy-worker.ts');
