// Reading a parameter through lambda-secrets-cache from a Node.js function (Node 18+ fetch).
const port = process.env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT ?? "2773";

async function getParameter(name, withDecryption = true) {
  const url = `http://127.0.0.1:${port}/systemsmanager/parameters/get?name=${encodeURIComponent(name)}&withDecryption=${withDecryption}`;
  const headers = { "X-Aws-Parameters-Secrets-Token": process.env.AWS_SESSION_TOKEN };
  if (process.env._X_AMZN_TRACE_ID) headers["X-Amzn-Trace-Id"] = process.env._X_AMZN_TRACE_ID;
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`parameter ${name}: ${response.status} ${await response.text()}`);
  return (await response.json()).Parameter.Value;
}

export const handler = async () => {
  const flags = await getParameter("/prod/app/flags");
  return { flags };
};
