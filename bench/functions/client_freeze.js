// One read through the Node.js client per invocation (default settings): `lsc-dev
// bench-clients` freezes the environment longer than 10 s between invocations and counts
// failed reads.
const cache = require('lambda-secrets-cache');

exports.handler = async (event) => {
  try {
    return { ok: (await cache.getSecretString(event.secret)).length };
  } catch (e) {
    return { error: e.constructor.name };
  }
};
