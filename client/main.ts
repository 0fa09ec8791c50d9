/**
 * The `ferry` process: runs the CLI on this process's argv and streams, and
 * exits with its code. Wiring only; the CLI is client/cli.ts.
 */
import { run } from './cli.ts';

const interrupt = new AbortController();
// Once: a second Ctrl-C kills at once, the usual way.
process.once('SIGINT', () => interrupt.abort());

// run() watches stdout while it runs; a reader that leaves after that (EPIPE) is no failure either.
process.stdout.on('error', () => {});

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  isTTY: process.stdout.isTTY === true,
  signal: interrupt.signal,
});
