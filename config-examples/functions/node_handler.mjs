// Reading a secret and a parameter through lambda-secrets-cache from a Node.js function (Node 18+
// fetch). Try it locally with the cache:
//   lsc-dev lambda --handler config-examples/functions/node_handler.handler -- ./lambda-secrets-cache
const port = process.env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT ?? "2773";

async function get(path) {
  const headers = { "X-Aws-Parameters-Secrets-Token": process.env.AWS_SESSION_TOKEN };
  if (process.env._X_AMZN_TRACE_ID) headers["X-Amzn-Trace-Id"] = process.env._X_AMZN_TRACE_ID;
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  // The status and error code only: an error body never carries a value, but keep logs lean.
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.json()).__type ?? ""}`);
  return { cache: response.headers.get("x-cache"), body: await response.json() };
}

async function getSecret(id) {
  return get(`/secretsmanager/get?secretId=${encodeURIComponent(id)}`);
}

async function getParameter(name, withDecryption = true) {
  return get(`/systemsmanager/parameters/get?name=${encodeURIComponent(name)}&withDecryption=${withDecryption}`);
}

export const handler = async (event) => {
  const secret = await getSecret(event?.secret ?? "prod/db/credentials");
  const parameter = await getParameter(event?.parameter ?? "/prod/app/flags");
  // Say what was read (field names, lengths, cache results), never the values.
  return {
    secret: { cache: secret.cache, fields: Object.keys(JSON.parse(secret.body.SecretString)).sort() },
    parameter: { cache: parameter.cache, length: parameter.body.Parameter.Value.length },
  };
};
