#!/usr/bin/env node
// Runs the TypeScript simulator through tsx, so `npx ferry-sim` works after `npm install`.
import { register } from 'tsx/esm/api';

register();
await import('../simulator/main.ts');
