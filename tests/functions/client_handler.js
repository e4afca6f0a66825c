// A handler that uses every function of the Node.js client (from the layer's
// nodejs/node_modules, through NODE_PATH) and its Powertools provider; tests/clients.rs runs it
// under aws-lambda-ric. It answers what each call returned (kinds and sizes, never values) or
// which error it raised.
const cache = require('lambda-secrets-cache');
const base = require('@aws-lambda-powertools/parameters/base');
const { getSecret } = require('@aws-lambda-powertools/parameters/secrets');
const { getParameter } = require('@aws-lambda-powertools/parameters/ssm');

cache.usePowertools(base);

const shape = (v) => {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { type: 'bytes', length: v.length };
  if (typeof v === 'string') return { type: 'str', length: v.length };
  if (v && typeof v === 'object') return Object.keys(v).sort();
  return v;
};

async function run(name, call, out) {
  try {
    out[name] = { ok: shape(await call()) };
  } catch (e) {
    out[name] = e instanceof cache.LambdaSecretsCacheError
      ? { error: e.constructor.name, status: e.status, code: e.code }
      : { error: e.constructor.name, cause: e.cause ? e.cause.constructor.name : null };
  }
}

async function wrongToken(call) {
  const saved = process.env.AWS_TOKEN;
  process.env.AWS_TOKEN = 'not-the-token';
  try {
    return await call();
  } finally {
    process.env.AWS_TOKEN = saved;
  }
}

exports.handler = async (event) => {
  const { secret: s, json: j, binary: b, parameter: p, missing } = event;
  const calls = {
    get_secret: () => cache.getSecret(s),
    get_secret_string: () => cache.getSecretString(s),
    get_secret_json: () => cache.getSecretJson(j),
    get_secret_binary: () => cache.getSecretBinary(b),
    get_parameter: async () => (await cache.getParameter(p, { withDecryption: true })).Parameter,
    get_parameter_value: () => cache.getParameterValue(p),
    refresh: () => cache.getSecretString(s, { refresh: true }),
    version_stage: () => cache.getSecretString(s, { versionStage: 'AWSCURRENT' }),
    not_found: () => cache.getSecret(missing),
    parameter_not_found: () => cache.getParameter(`/${missing}`),
    bad_request: () => cache.getSecret(s, { versionId: 'x', versionStage: 'AWSCURRENT' }),
    not_json: () => cache.getSecretJson(s),
    not_binary: () => cache.getSecretBinary(s),
    token_rejected: () => wrongToken(() => cache.getSecret(s)),
    powertools_secret: () => getSecret(j, { transform: 'json' }),
    powertools_parameter: () => getParameter(p),
    powertools_not_found: () => getSecret(missing),
  };
  const out = {};
  for (const name of event.only ?? Object.keys(calls)) await run(name, calls[name], out);
  return out;
};
