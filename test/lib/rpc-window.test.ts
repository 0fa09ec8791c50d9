/**
 * Ferry's servers advertise a 16 MiB HTTP/2 receive window (lib/rpc.ts
 * widenReceiveWindow), seen from a raw HTTP/2 client the way any gRPC
 * client's transport sees it: the SETTINGS frame's initial window per
 * stream, and the connection's window after the server's WINDOW_UPDATE.
 * This fails if a grpc-js upgrade moves what the widening reaches into.
 */
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { once } from 'node:events';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { bind, SERVER_RECEIVE_WINDOW_BYTES, widenReceiveWindow } from '../../lib/rpc.ts';

test('a server bound with bind() advertises a 16 MiB receive window per stream and per connection', async (t) => {
  const server = new grpc.Server();
  const address = await bind(server, '127.0.0.1:0');
  t.after(() => server.forceShutdown());
  const session = http2.connect(`http://${address}`);
  t.after(() => session.destroy());
  const [settings] = (await once(session, 'remoteSettings')) as [http2.Settings];
  assert.equal(settings.initialWindowSize, SERVER_RECEIVE_WINDOW_BYTES, 'the per-stream window is still the default');
  // The connection window is raised by a WINDOW_UPDATE that follows the SETTINGS; a ping's answer comes after it.
  await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  assert.equal(session.state.remoteWindowSize, SERVER_RECEIVE_WINDOW_BYTES, 'the connection window is still the default');
  assert.equal(widenReceiveWindow(server), true, 'grpc-js keeps its http2 servers elsewhere now: the widening reaches nothing');
});

test('a server that is not bound yet has nothing to widen', () => {
  assert.equal(widenReceiveWindow(new grpc.Server()), false);
});
