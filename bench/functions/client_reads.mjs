// What one cached read costs a Node.js function, each way of reading, in one process: the
// client (lambda-secrets-cache), http.get on Node's global agent (kept alive since Node 19),
// fetch (undici), the AWS SDK v3 straight to AWS (moto behind a proxy adding the modelled
// latency) and Powertools' SecretsProvider (its in-process cache, 5 s). Rounds interleave
// the variants; prints JSON {variant: [µs, ...]}. Environment as client_reads.py's, with
// NODE_PATH holding the client and Powertools.
import { createRequire } from 'node:module';
import http from 'node:http';

const require = createRequire(import.meta.url);
const cache = require('lambda-secrets-cache');
const { SecretsManagerClient, GetSecretValueCommand } = require('@aws-sdk/client-secrets-manager');
const { SecretsProvider } = require('@aws-lambda-powertools/parameters/secrets');

const SECRET = process.env.SECRET;
const READS = Number(process.env.READS ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const AWS_READS = Number(process.env.AWS_READS ?? 20);
const PORT = process.env.PARAMETERS_SECRETS_EXTENSION_HTTP_PORT;
const HEADERS = { 'X-Aws-Parameters-Secrets-Token': process.env.AWS_SESSION_TOKEN };
const PATH = `/secretsmanager/get?secretId=${encodeURIComponent(SECRET)}`;

const sdk = new SecretsManagerClient({ endpoint: process.env.AWS_ENDPOINT_URL });
const powertools = new SecretsProvider({ awsSdkV3Client: sdk });

const httpGet = () =>
  new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: PORT, path: PATH, headers: HEADERS }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks)).SecretString));
      })
      .on('error', reject);
  });

const variants = {
  client: [() => cache.getSecretString(SECRET), READS],
  'http.get (global agent)': [httpGet, READS],
  fetch: [async () => (await (await fetch(`http://127.0.0.1:${PORT}${PATH}`, { headers: HEADERS })).json()).SecretString, READS],
  'AWS SDK v3 (AWS each read)': [async () => (await sdk.send(new GetSecretValueCommand({ SecretId: SECRET }))).SecretString, AWS_READS],
  'Powertools SecretsProvider (in-process cache)': [() => powertools.get(SECRET, { maxAge: 3600 }), READS],
};

const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const expected = await cache.getSecretString(SECRET);
for (const [name, [read]] of Object.entries(variants)) {
  if ((await read()) !== expected) throw new Error(`${name} read something else`);
}
const names = Object.keys(variants);
for (let r = 0; r < ROUNDS; r++) {
  const order = names.slice(r % names.length).concat(names.slice(0, r % names.length));
  for (const name of order) {
    const [read, n] = variants[name];
    for (let i = 0; i < n; i++) {
      const started = process.hrtime.bigint();
      await read();
      times[name].push(Number(process.hrtime.bigint() - started) / 1000);
    }
  }
}
// Kept-alive sockets hold the event loop open: exit once the whole output is written.
process.stdout.write(`${JSON.stringify(times)}\n`, () => process.exit(0));
