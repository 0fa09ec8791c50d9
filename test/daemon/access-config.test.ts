/**
 * The network settings (issue 14): where TLS, auth and audit files come
 * from, and the rule that keeps ferryd off a network without TLS and
 * principals unless told --insecure, in loadConfig and in the real binary.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../daemon/config.ts';
import { isLoopback } from '../../lib/address.ts';
import { AuthFileError, Principals, tokenSha256 } from '../../daemon/access/principals.ts';
import { ROOT, runProcess, spawnDaemon, tempDir, waitForLog } from '../helpers.ts';
import { accessFixture } from './access-helpers.ts';

describe('network settings', () => {
  test('loopback is 127.0.0.0/8, ::1, localhost and unix sockets; nothing else', () => {
    for (const a of ['127.0.0.1:1', '127.1.2.3:0', '[::1]:5', 'localhost:9', 'LOCALHOST:9', 'unix:/tmp/s']) assert.ok(isLoopback(a), a);
    for (const a of ['0.0.0.0:1', '[::]:1', '10.0.0.1:1', 'ferry.example:1', '128.0.0.1:1', '[::ffff:127.0.0.1]:1']) assert.ok(!isLoopback(a), a);
  });

  test('a non-loopback listen without TLS and --auth is refused in one line naming what it lacks, unless --insecure', () => {
    const cwd = '/srv';
    assert.throws(() => loadConfig({ listen: '0.0.0.0:50051' }, {}, cwd), (e: Error) => e instanceof ConfigError && e.message === 'listen 0.0.0.0:50051 is reachable from other machines: serving it needs --tls-cert, --tls-key and --auth (or --insecure to serve it without, which lets anyone who reaches the port start, complete and cancel migrations)');
    assert.throws(() => loadConfig({ listen: '0.0.0.0:1', tlsCert: 'c.pem', tlsKey: 'k.pem' }, {}, cwd), /serving it needs --auth \(or --insecure/);
    assert.throws(() => loadConfig({ listen: '10.1.2.3:1', auth: 'a.json' }, {}, cwd), /serving it needs --tls-cert and --tls-key \(or/);
    const ok = loadConfig({ listen: '0.0.0.0:1', tlsCert: 'c.pem', tlsKey: 'k.pem', auth: 'a.json' }, {}, cwd);
    assert.deepEqual([ok.tls, ok.auth], [{ cert: '/srv/c.pem', key: '/srv/k.pem' }, '/srv/a.json']);
    assert.equal(loadConfig({ listen: '0.0.0.0:1', insecure: true }, {}, cwd).insecure, true);
    assert.equal(loadConfig({}, {}, cwd).insecure, false);
  });

  test('TLS, auth and audit paths from flags, the environment or the config file (relative to it), each later one losing', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'ferry.json');
    writeFileSync(file, JSON.stringify({ tls: { cert: 'c.pem', key: 'k.pem', clientCa: 'ca.pem' }, auth: '/etc/ferry/auth.json', auditLog: 'audit.jsonl' }));
    const fromFile = loadConfig({ config: file }, {}, '/cwd');
    assert.deepEqual([fromFile.tls, fromFile.auth, fromFile.auditLog], [{ cert: join(dir, 'c.pem'), key: join(dir, 'k.pem'), clientCa: join(dir, 'ca.pem') }, '/etc/ferry/auth.json', join(dir, 'audit.jsonl')]);
    const env = { FERRY_TLS_CERT: 'e.pem', FERRY_TLS_KEY: 'e.key', FERRY_TLS_CLIENT_CA: 'eca.pem', FERRY_AUTH: 'ea.json', FERRY_AUDIT_LOG: 'ea.log' };
    const fromEnv = loadConfig({ config: file }, env, '/cwd');
    assert.deepEqual([fromEnv.tls, fromEnv.auth, fromEnv.auditLog], [{ cert: '/cwd/e.pem', key: '/cwd/e.key', clientCa: '/cwd/eca.pem' }, '/cwd/ea.json', '/cwd/ea.log']);
    const fromFlags = loadConfig({ config: file, tlsCert: 'f.pem', auth: 'fa.json' }, env, '/cwd');
    assert.deepEqual([fromFlags.tls?.cert, fromFlags.tls?.key, fromFlags.auth], ['/cwd/f.pem', '/cwd/e.key', '/cwd/fa.json']);
  });

  test('half a TLS setting, an unknown tls key or a non-boolean insecure is one line naming it', (t) => {
    assert.throws(() => loadConfig({ tlsCert: 'c.pem' }, {}, '/'), /^ConfigError: --tls-cert: a TLS certificate needs its key too/);
    assert.throws(() => loadConfig({}, { FERRY_TLS_KEY: 'k' }, '/'), /^ConfigError: FERRY_TLS_KEY: a TLS key needs its certificate too/);
    assert.throws(() => loadConfig({ tlsClientCa: 'ca.pem' }, {}, '/'), /a client CA is for TLS, which needs --tls-cert and --tls-key/);
    const dir = tempDir(t);
    const file = join(dir, 'f.json');
    writeFileSync(file, JSON.stringify({ tls: { cert: 'c', key: 'k', ca: 'x' } }));
    assert.throws(() => loadConfig({ config: file }, {}, '/'), /tls\.ca is not a setting \(known: cert, key, clientCa\)/);
    writeFileSync(file, JSON.stringify({ insecure: 'yes' }));
    assert.throws(() => loadConfig({ config: file }, {}, '/'), /insecure must be true or false/);
  });

  test('an auth file is checked entry by entry, in one line naming the entry and field', () => {
    const bad = (principals: unknown[], message: RegExp) => assert.throws(() => Principals.parse({ principals }, 'auth file a.json'), (e: Error) => e instanceof AuthFileError && message.test(e.message));
    const hash = tokenSha256('t');
    bad([{ name: 'x', role: 'root', tokenSha256: hash }], /^auth file a\.json: principals\[0\]\.role must be one of viewer, operator, admin, got "root"$/);
    bad([{ name: 'x', role: 'viewer' }], /principals\[0\] \(x\) needs exactly one of tokenSha256 and certSubject/);
    bad([{ name: 'x', role: 'viewer', tokenSha256: 'abc' }], /principals\[0\]\.tokenSha256 must be 64 hex digits/);
    bad([{ name: 'x', role: 'viewer', tokenSha256: hash }, { name: 'x', role: 'admin', certSubject: 'CN=a' }], /principals\[1\]\.name x is used twice/);
    bad([{ name: 'x', role: 'viewer', tokenSha256: hash }, { name: 'y', role: 'admin', tokenSha256: hash.toUpperCase() }], /principals\[1\]\.tokenSha256 is also x's/);
    bad([{ name: 'x', role: 'viewer', certSubject: 'ops' }], /principals\[0\]\.certSubject must be attribute=value pairs/);
    bad([{ name: 'x', role: 'viewer', token: 't' }], /principals\[0\]\.token is not a field/);
    const p = Principals.parse({ principals: [{ name: 'x', role: 'operator', tokenSha256: hash }, { name: 'c', role: 'admin', certSubject: '/O=Acme/CN=ops' }] }, 's');
    assert.deepEqual(p.byToken('t'), { name: 'x', role: 'operator' });
    assert.equal(p.byToken('u'), undefined);
    assert.deepEqual(p.byCertificate({ CN: 'ops', O: 'Acme' }), { name: 'c', role: 'admin' });
    assert.equal(p.byCertificate({ CN: 'ops' }), undefined, 'a subject matches with exactly its attributes');
  });
});

describe('ferryd, the binary', () => {
  test('on a non-loopback address without TLS and --auth it exits 2 with one line naming the flags; with --insecure it starts and warns', async (t) => {
    const dir = tempDir(t);
    const { code, stderr } = await runProcess(process.execPath, [join(ROOT, 'bin/ferryd.mjs'), '--listen', '0.0.0.0:0', '--data-dir', join(dir, 'data')]);
    assert.equal(code, 2, stderr);
    assert.deepEqual(stderr.trim().split('\n'), ['ferryd: listen 0.0.0.0:0 is reachable from other machines: serving it needs --tls-cert, --tls-key and --auth (or --insecure to serve it without, which lets anyone who reaches the port start, complete and cancel migrations)']);

    const insecure = await spawnDaemon(['--listen', '0.0.0.0:0', '--insecure', '--data-dir', join(dir, 'data2')]);
    t.after(() => insecure.child.kill('SIGKILL'));
    const warning = insecure.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('--insecure: serving 0.0.0.0:0 without TLS or --auth'));
    assert.ok(warning, JSON.stringify(insecure.logs.map((l) => l.msg)));
    assert.equal(warning.level, 40);
    assert.match(String(warning.msg), /anyone who reaches this port can start, complete and cancel migrations$/);

    // With --auth but no TLS the risk is the tokens, and the warning says so.
    const fx = accessFixture(dir);
    const tokensInClear = await spawnDaemon(['--listen', '0.0.0.0:0', '--insecure', '--auth', fx.authFile, '--data-dir', join(dir, 'data3')]);
    t.after(() => tokensInClear.child.kill('SIGKILL'));
    const second = tokensInClear.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('--insecure: serving 0.0.0.0:0 without TLS;'));
    assert.match(String(second?.msg), /callers' tokens travel in clear text/, JSON.stringify(tokensInClear.logs.map((l) => l.msg)));
  });

  test('an auth file or TLS file that cannot be used stops it with exit 2 and one line naming the file', async (t) => {
    const dir = tempDir(t);
    const fx = accessFixture(dir);
    const run = async (args: string[]) => {
      const { code, stderr } = await runProcess(process.execPath, [join(ROOT, 'bin/ferryd.mjs'), '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log-level', 'silent', ...args]);
      return { code, lines: stderr.trim().split('\n') };
    };
    const badAuth = join(dir, 'bad.json');
    writeFileSync(badAuth, '{"principals": [{"name": "x", "role": "boss", "tokenSha256": "00"}]}');
    assert.deepEqual(await run(['--auth', badAuth]), { code: 2, lines: [`ferryd: auth file ${badAuth}: principals[0].role must be one of viewer, operator, admin, got "boss"`] });
    assert.deepEqual(await run(['--tls-cert', fx.pki.server.cert, '--tls-key', fx.pki.ops.key]), {
      code: 2,
      lines: [`ferryd: TLS key ${fx.pki.ops.key} is not the key of certificate ${fx.pki.server.cert} (error:05800074:x509 certificate routines::key values mismatch)`],
    });
    assert.deepEqual(await run(['--tls-cert', join(dir, 'none.pem'), '--tls-key', fx.pki.server.key]), { code: 2, lines: [`ferryd: TLS certificate ${join(dir, 'none.pem')} cannot be read: ENOENT`] });
  });

  test('with TLS and --auth on loopback it serves, and logs TLS on', async (t) => {
    const dir = tempDir(t);
    const fx = accessFixture(dir);
    const d = await spawnDaemon(['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--tls-cert', fx.pki.server.cert, '--tls-key', fx.pki.server.key, '--tls-client-ca', fx.pki.ca.cert, '--auth', fx.authFile]);
    t.after(() => d.child.kill('SIGKILL'));
    const on = await waitForLog(d, 'TLS on');
    assert.equal(on.subject, 'CN=ferryd');
    const listening = await waitForLog(d, 'listening');
    assert.deepEqual([listening.tls, listening.auth], [true, true]);
  });
});
