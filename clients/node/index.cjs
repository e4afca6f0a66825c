'use strict';
/**
 * Read secrets and parameters through lambda-secrets-cache (or AWS's Parameters and Secrets
 * Lambda Extension, which answers the same routes) from a Lambda function. No dependencies.
 *
 *   const cache = require('lambda-secrets-cache');        // or: import * as cache from ...
 *   const { password } = await cache.getSecretJson('prod/db');
 *
 * The token and the port come from the same variables, in the same order, as the extension
 * takes them. Connections are kept alive (one serves sequential reads); a kept-alive
 * connection found closed or reset before any answer (after a freeze, say) is retried once
 * on a new one. Errors are typed and carry the status and code; none holds a value.
 */

const http = require('node:http');

const TOKEN_HEADER = 'X-Aws-Parameters-Secrets-Token';
const PORT_VARIABLE = 'PARAMETERS_SECRETS_EXTENSION_HTTP_PORT';
const TOKEN_VARIABLES = ['AWS_TOKEN', 'AWS_SESSION_TOKEN', 'AWS_CONTAINER_AUTHORIZATION_TOKEN'];
// With SnapStart the function's credentials come from the container endpoint.
const SNAPSTART_TOKEN_VARIABLES = ['AWS_TOKEN', 'AWS_CONTAINER_AUTHORIZATION_TOKEN', 'AWS_SESSION_TOKEN'];
const DEFAULT_PORT = 2773;
// Above the extension's own budget for one fetch (3 s by default, retries included).
const DEFAULT_TIMEOUT_MS = 10000;

/** An error answer of the extension, or a failure to reach it (`status` 0). */
class LambdaSecretsCacheError extends Error {
  constructor(status, code, message) {
    super(message ? `${status} ${code}: ${message}` : `${status} ${code}`);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
  }
}
class BadRequest extends LambdaSecretsCacheError {}
class TokenRejected extends LambdaSecretsCacheError {}
class AccessDenied extends LambdaSecretsCacheError {}
class NotFound extends LambdaSecretsCacheError {}
class Throttled extends LambdaSecretsCacheError {}
class UpstreamUnavailable extends LambdaSecretsCacheError {}
class UpstreamInvalid extends LambdaSecretsCacheError {}
class UpstreamTimeout extends LambdaSecretsCacheError {}
class ShuttingDown extends LambdaSecretsCacheError {}
class ExtensionUnavailable extends LambdaSecretsCacheError {}
class NotAString extends LambdaSecretsCacheError {}

const NOT_FOUND = new Set(['ResourceNotFoundException', 'ParameterNotFound', 'ParameterVersionNotFound']);
const ACCESS_DENIED = new Set(['AccessDeniedException', 'AccessDenied']);

function errorFor(status, body) {
  let code = '';
  let message = '';
  try {
    const parsed = JSON.parse(body.toString('utf8'));
    code = String(parsed.__type ?? '');
    message = String(parsed.message ?? parsed.Message ?? '').slice(0, 512);
  } catch {
    // not the extension's JSON
  }
  let Kind;
  if (status === 403 && code === 'InvalidToken') Kind = TokenRejected;
  else if (NOT_FOUND.has(code)) Kind = NotFound; // Parameter Store says "not found" with a 400
  else if (ACCESS_DENIED.has(code)) Kind = AccessDenied;
  else if (status === 504 && code === 'ShuttingDown') Kind = ShuttingDown;
  else if (status === 502 && code === 'InvalidUpstreamResponse') Kind = UpstreamInvalid;
  else if (!code) {
    Kind = ExtensionUnavailable;
    code = `HTTP${status}`;
  } else {
    Kind = { 400: BadRequest, 403: AccessDenied, 404: NotFound, 429: Throttled, 504: UpstreamTimeout }[status] ??
      (status >= 500 ? UpstreamUnavailable : BadRequest);
  }
  return new Kind(status, code, message);
}

function token() {
  const env = process.env;
  const order = (env.AWS_LAMBDA_INITIALIZATION_TYPE ?? '').trim() === 'snap-start' ? SNAPSTART_TOKEN_VARIABLES : TOKEN_VARIABLES;
  for (const name of order) {
    const value = (env[name] ?? '').trim();
    if (value) return value;
  }
  // Set but empty (AWS's emulator with long-term keys): the empty token, as the extension takes it.
  if (order.some((name) => name in env)) return '';
  throw new TokenRejected(0, 'NoToken', `none of ${order.join(', ')} is set`);
}

function port() {
  const raw = (process.env[PORT_VARIABLE] ?? '').trim();
  if (!raw) return DEFAULT_PORT;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0 || n >= 65536) {
    throw new ExtensionUnavailable(0, 'BadPort', `${PORT_VARIABLE} is not a port number`);
  }
  return n;
}

// What a kept-alive connection the server closed looks like, before any answer.
const CLOSED = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

class Client {
  /** `port` and `timeoutMs` (per read) default to the environment (else 2773) and 10 s. */
  constructor({ port: p, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    this.port = p;
    this.timeoutMs = timeoutMs;
    // Keep-alive, one socket per concurrent read; idle ones are reused, most recent first.
    // The time-out is the socket's (one timer per connection, not one per read).
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 8, scheduling: 'lifo', timeout: timeoutMs });
  }

  /** The GetSecretValue answer (`SecretString` or base64 `SecretBinary`, `ARN`, `Name`, ...). */
  getSecret(secretId, { versionStage, versionId, refresh = false, roleArn } = {}) {
    const query = { secretId };
    if (versionStage != null) query.versionStage = versionStage;
    if (versionId != null) query.versionId = versionId;
    if (refresh) query.refreshNow = 'true';
    if (roleArn != null) query.roleArn = roleArn;
    return this.#get('/secretsmanager/get', query);
  }

  /** `SecretString`; `NotAString` if the secret holds binary. */
  async getSecretString(secretId, options) {
    const secret = await this.getSecret(secretId, options);
    if (secret.SecretString == null) {
      throw new NotAString(200, 'SecretBinary', `${secretId} holds SecretBinary: use getSecretBinary`);
    }
    return secret.SecretString;
  }

  /** `SecretString` parsed as JSON; a `SyntaxError` without the text if it is not JSON. */
  async getSecretJson(secretId, options) {
    const text = await this.getSecretString(secretId, options);
    try {
      return JSON.parse(text);
    } catch {
      // V8's message quotes the text: not passed on.
      throw new SyntaxError(`${secretId} is not JSON`);
    }
  }

  /** `SecretBinary`, decoded; `NotAString` if the secret holds a string. */
  async getSecretBinary(secretId, options) {
    const secret = await this.getSecret(secretId, options);
    if (secret.SecretBinary == null) {
      throw new NotAString(200, 'SecretString', `${secretId} holds SecretString: use getSecretString`);
    }
    return Buffer.from(secret.SecretBinary, 'base64');
  }

  /** The GetParameter answer (`{ Parameter: { Name, Type, Value, Version, ... } }`). */
  getParameter(name, { withDecryption, version, label, refresh = false, roleArn } = {}) {
    const query = { name };
    if (withDecryption != null) query.withDecryption = withDecryption ? 'true' : 'false';
    if (version != null) query.version = String(Math.trunc(Number(version)));
    if (label != null) query.label = label;
    if (refresh) query.refreshNow = 'true';
    if (roleArn != null) query.roleArn = roleArn;
    return this.#get('/systemsmanager/parameters/get', query);
  }

  /** The parameter's `Value`. */
  async getParameterValue(name, options) {
    return (await this.getParameter(name, options)).Parameter.Value;
  }

  /** Closes the idle connections. */
  close() {
    this.agent.destroy();
    this.agent = new http.Agent(this.agent.options);
  }

  async #get(path, query) {
    let target = `${path}?`;
    for (const [k, v] of Object.entries(query)) target += `${target.endsWith('?') ? '' : '&'}${k}=${encodeURIComponent(v)}`;
    const headers = { [TOKEN_HEADER]: token() };
    let answer;
    try {
      answer = await this.#once(target, headers);
    } catch (e) {
      if (!CLOSED.has(e.code) || e.answered) throw this.#unreachable(e);
      // Closed or reset before any answer (a kept-alive connection across a freeze): the idle
      // ones are as stale; a GET is safe to send again, once, on a new connection.
      for (const sockets of Object.values(this.agent.freeSockets)) for (const s of sockets) s.destroy();
      try {
        answer = await this.#once(target, headers);
      } catch (again) {
        throw this.#unreachable(again);
      }
    }
    const { status, body } = answer;
    if (status !== 200) throw errorFor(status, body);
    let parsed;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new ExtensionUnavailable(status, 'NotJson', 'the answer is not JSON');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ExtensionUnavailable(status, 'NotJson', 'the answer is not a JSON object');
    }
    return parsed;
  }

  #unreachable(e) {
    if (e instanceof LambdaSecretsCacheError) return e;
    if (e.code === 'ETIMEDOUT') return new ExtensionUnavailable(0, 'ClientTimeout', `no answer within ${this.timeoutMs} ms`);
    return new ExtensionUnavailable(0, 'Unreachable', `cannot reach the extension: ${e.code ?? e.name}`);
  }

  #once(target, headers) {
    return new Promise((resolve, reject) => {
      const request = http.request(
        { host: '127.0.0.1', port: this.port ?? port(), path: target, method: 'GET', headers, agent: this.agent },
        (response) => {
          const chunks = [];
          response.on('data', (c) => chunks.push(c));
          response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }));
          response.on('error', (e) => {
            e.answered = true;
            reject(e);
          });
        },
      );
      request.on('timeout', () => {
        const e = new Error('timeout');
        e.code = 'ETIMEDOUT';
        request.destroy(e);
      });
      request.on('error', reject);
      request.end();
    });
  }
}

let defaultClient;
const client = () => (defaultClient ??= new Client());

/**
 * Providers for Powertools for AWS Lambda (TypeScript)'s Parameters utility, built on the
 * `BaseProvider` of the module you pass (`@aws-lambda-powertools/parameters/base`, as your
 * code imports it: ESM or CommonJS), installed as its default `secrets` and `ssm` providers so
 * that `getSecret(...)` and `getParameter(...)` read through the extension. Powertools' own
 * cache, `maxAge` and `transform` apply on top. Returns `{ secrets, ssm }`.
 */
function usePowertools(base, reader = client()) {
  const { BaseProvider, DEFAULT_PROVIDERS } = base;
  class ExtensionProvider extends BaseProvider {
    constructor(kind) {
      super({});
      this.kind = kind;
    }

    async _get(name, options = {}) {
      const sdk = options.sdkOptions ?? {};
      if (this.kind === 'secrets') {
        const secret = await reader.getSecret(name, { versionId: sdk.VersionId, versionStage: sdk.VersionStage });
        return secret.SecretString ?? new Uint8Array(Buffer.from(secret.SecretBinary, 'base64'));
      }
      return reader.getParameterValue(name, { withDecryption: options.decrypt ?? sdk.WithDecryption });
    }

    async _getMultiple() {
      throw new Error('the extension reads one item at a time; use SSMProvider for a path');
    }
  }
  const providers = { secrets: new ExtensionProvider('secrets'), ssm: new ExtensionProvider('ssm') };
  Object.assign(DEFAULT_PROVIDERS, providers);
  return providers;
}

module.exports = {
  Client,
  getSecret: (id, o) => client().getSecret(id, o),
  getSecretString: (id, o) => client().getSecretString(id, o),
  getSecretJson: (id, o) => client().getSecretJson(id, o),
  getSecretBinary: (id, o) => client().getSecretBinary(id, o),
  getParameter: (name, o) => client().getParameter(name, o),
  getParameterValue: (name, o) => client().getParameterValue(name, o),
  usePowertools,
  LambdaSecretsCacheError,
  BadRequest,
  TokenRejected,
  AccessDenied,
  NotFound,
  Throttled,
  UpstreamUnavailable,
  UpstreamInvalid,
  UpstreamTimeout,
  ShuttingDown,
  ExtensionUnavailable,
  NotAString,
  TOKEN_HEADER,
};
