#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx ferry` works after `npm install`.
import { register } from 'tsx/esm/api';

register();
await import('../client/main.ts');
