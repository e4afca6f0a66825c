// The Node.js client against a scripted server on loopback: the wire (token, port, query, a
// kept-alive connection), the retry on a connection closed before any answer, each error type,
// and that no error carries a value. Under real Lambda runtimes: tests/clients.rs.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test, beforeEach, afterEach } from 'node:test';
import { inspect } from 'node:util';

import * as cache from '../index.mjs';

const VALUE = 's3cr3t-value-never-in-errors';
let server;
let requests;
let script;
let closeAfterAnswer;

function answerFor(path, q) {
  if (path === '/secretsmanager/get') {
    if (q.secretId.startsWith('bin')) return { Name: q.secretId, SecretString: null, SecretBinary: Buffer.from(`\u0000${VALUE}`).toString('base64') };
    if (q.secretId.startsWith('json')) return { Name: q.secretId, SecretString: JSON.stringify({ password: VALUE }) };
    return { Name: q.secretId, SecretString: VALUE };
  }
  return { Parameter: { Name: q.name, Value: VALUE, Version: 3, Type: 'String' } };
}

beforeEach(async () => {
  requests = [];
  script = [];
  closeAfterAnswer = false;
  server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
    const url = new URL(req.url, 'http://x');
    const q = Object.fromEntries(url.searchParams);
    requests.push({ path: url.pathname, q, token: req.headers['x-aws-parameters-secrets-token'], socket: req.socket.remotePort });
    const [status, body] = script.shift() ?? [200, answerFor(url.pathname, q)];
    if (status === 'reset') {
      // Closed with the request unanswered, as a connection a server dropped during a freeze.
      req.socket.resetAndDestroy();
      return;
    }
    const raw = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': raw.length });
    res.end(raw, () => {
      // A server that drops idle connections (or a freeze outliving them): the client finds
      // out only at its next request.
      if (closeAfterAnswer) setImmediate(() => req.socket.destroy());
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  for (const name of ['AWS_TOKEN', 'AWS_SESSION_TOKEN', 'AWS_CONTAINER_AUTHORIZATION_TOKEN', 'AWS_LAMBDA_INITIALIZATION_TYPE']) delete process.env[name];
  process.env.AWS_SESSION_TOKEN = 'session';
  process.env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT = String(server.address().port);
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

test('every function sends the documented request on one kept-alive connection', async () => {
  const c = new cache.Client();
  assert.equal((await c.getSecret('a/b c', { versionStage: 'AWSPREVIOUS', refresh: true })).SecretString, VALUE);
  assert.equal(await c.getSecretString('s', { versionId: 'v1' }), VALUE);
  assert.deepEqual(await c.getSecretJson('json-s'), { password: VALUE });
  assert.deepEqual(await c.getSecretBinary('bin-s'), Buffer.from(`\u0000${VALUE}`));
  assert.equal((await c.getParameter('/p', { withDecryption: true, version: 3 })).Parameter.Version, 3);
  assert.equal(await c.getParameterValue('/p', { label: 'prod', roleArn: 'arn:aws:iam::123456789012:role/r' }), VALUE);
  assert.equal(await cache.getSecretString('s'), VALUE, 'the module functions');
  assert.deepEqual(requests.map((r) => [r.path, r.q]).slice(0, 6), [
    ['/secretsmanager/get', { secretId: 'a/b c', versionStage: 'AWSPREVIOUS', refreshNow: 'true' }],
    ['/secretsmanager/get', { secretId: 's', versionId: 'v1' }],
    ['/secretsmanager/get', { secretId: 'json-s' }],
    ['/secretsmanager/get', { secretId: 'bin-s' }],
    ['/systemsmanager/parameters/get', { name: '/p', withDecryption: 'true', version: '3' }],
    ['/systemsmanager/parameters/get', { name: '/p', label: 'prod', roleArn: 'arn:aws:iam::123456789012:role/r' }],
  ]);
  assert.ok(requests.every((r) => r.token === 'session'));
  assert.equal(new Set(requests.slice(0, 6).map((r) => r.socket)).size, 1, 'one connection');
  c.close();
});

test('the token follows the extension\'s order, an empty one included', async () => {
  const c = new cache.Client();
  process.env.AWS_TOKEN = 'explicit';
  process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = 'container';
  await c.getSecret('s');
  delete process.env.AWS_TOKEN;
  process.env.AWS_LAMBDA_INITIALIZATION_TYPE = 'snap-start';
  await c.getSecret('s');
  delete process.env.AWS_LAMBDA_INITIALIZATION_TYPE;
  delete process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
  process.env.AWS_SESSION_TOKEN = '';
  await c.getSecret('s');
  assert.deepEqual(requests.map((r) => r.token), ['explicit', 'container', '']);
  delete process.env.AWS_SESSION_TOKEN;
  await assert.rejects(c.getSecret('s'), cache.TokenRejected);
  c.close();
});

test('a connection closed while idle is retried once on a new one', async () => {
  const c = new cache.Client();
  closeAfterAnswer = true;
  for (let i = 0; i < 5; i++) {
    assert.equal(await c.getSecretString('s'), VALUE);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(requests.length, 5, 'each read reached the server once');
  closeAfterAnswer = false;
  await c.getSecretString('s');
  script.push(['reset']);
  assert.equal(await c.getSecretString('s'), VALUE, 'reset before any answer: sent again');
  assert.equal(requests.length, 8);
  script.push(['reset'], ['reset']);
  const e = await c.getSecretString('s').then(() => null, (err) => err);
  assert.ok(e instanceof cache.ExtensionUnavailable, `once only, then an error: ${e}`);
  assert.equal(requests.length, 10);
  c.close();
});

test('each error is its own type with status and code', async () => {
  const c = new cache.Client();
  const cases = [
    [400, 'InvalidRequest', cache.BadRequest],
    [400, 'TooManyRoles', cache.BadRequest],
    [403, 'InvalidToken', cache.TokenRejected],
    [403, 'AccessDeniedException', cache.AccessDenied],
    [400, 'AccessDeniedException', cache.AccessDenied],
    [404, 'ResourceNotFoundException', cache.NotFound],
    [400, 'ParameterNotFound', cache.NotFound],
    [400, 'DecryptionFailure', cache.BadRequest],
    [429, 'ThrottlingException', cache.Throttled],
    [500, 'MissingRegion', cache.UpstreamUnavailable],
    [500, 'MissingCredentials', cache.UpstreamUnavailable],
    [502, 'ConnectionError', cache.UpstreamUnavailable],
    [502, 'InvalidUpstreamResponse', cache.UpstreamInvalid],
    [504, 'TimeoutError', cache.UpstreamTimeout],
    [504, 'ShuttingDown', cache.ShuttingDown],
  ];
  for (const [status, code, Kind] of cases) {
    script.push([status, { __type: code, message: `about ${code}` }]);
    const e = await c.getSecret('s').then(() => null, (err) => err);
    assert.ok(e instanceof Kind, `${code}: ${e}`);
    assert.ok(e instanceof cache.LambdaSecretsCacheError);
    assert.deepEqual([e.status, e.code], [status, code]);
  }
  script.push([502, Buffer.from('<html>bad gateway</html>')]);
  await assert.rejects(c.getSecret('s'), cache.ExtensionUnavailable);
  c.close();
});

test('no value in any error', async () => {
  const c = new cache.Client();
  const e1 = await c.getSecretBinary('s').then(() => null, (e) => e);
  assert.ok(e1 instanceof cache.NotAString);
  script.push([200, { Name: 's', SecretString: `{not json ${VALUE}` }]);
  const e2 = await c.getSecretJson('s').then(() => null, (e) => e);
  assert.ok(e2 instanceof SyntaxError);
  for (const e of [e1, e2]) assert.ok(!inspect(e).includes(VALUE) && !String(e).includes(VALUE), inspect(e));
  c.close();
});

test('nothing listening is ExtensionUnavailable', async () => {
  const port = server.address().port;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const e = await new cache.Client({ port }).getSecret('s').then(() => null, (err) => err);
  assert.ok(e instanceof cache.ExtensionUnavailable, String(e));
  assert.equal(e.code, 'Unreachable');
});

test('the CommonJS entry is the same module', async () => {
  const { createRequire } = await import('node:module');
  const required = createRequire(import.meta.url)('../index.cjs');
  assert.equal(required.Client, cache.Client);
});
