#!/usr/bin/env node
// Runs the TypeScript daemon through tsx, so `npx ferryd` works after `npm install`.
import { register } from 'tsx/esm/api';

register();
await import('../daemon/main.ts');
