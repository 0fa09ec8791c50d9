#!/usr/bin/env node
// Runs the TypeScript conformance kit through tsx, so `npx ferry-conformance` works after `npm install`.
import { register } from 'tsx/esm/api';

register();
await import('../plugins/conformance/main.ts');
