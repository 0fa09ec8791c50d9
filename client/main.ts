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

// grpc-js sends the target's host as the TLS server name even when it is an IP address (grpc/grpc-node#1919), and
// Node then warns DEP0123 on stderr, once per process: `ferry --cacert ca.pem --server 127.0.0.1:50051` would print
// a deprecation warning that is none of its user's business. That one warning alone is dropped; the certificate is
// still checked against the IP address.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === 'DEP0123') return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  isTTY: process.stdout.isTTY === true,
  signal: interrupt.signal,
});
