"""What one cached read costs a Python function, each way of reading, in one process: the
client (lambda_secrets_cache), urllib.request as the README and AWS's docs show it (a new
connection per read), requests (a new connection per read, as `requests.get` does),
boto3 straight to AWS (moto behind a proxy adding the modelled latency) and AWS's in-process
aws-secretsmanager-caching. Rounds interleave the variants; prints JSON {variant: [µs, ...]}.

Environment: SECRET, READS (per variant per round), ROUNDS, AWS_READS (boto3's per round),
PYTHONPATH with clients/python, the extension's port and token as a function has them.
"""
import json
import os
import time
import urllib.parse
import urllib.request

import boto3
import requests
from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

import lambda_secrets_cache

SECRET = os.environ["SECRET"]
READS = int(os.environ.get("READS", "2000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
AWS_READS = int(os.environ.get("AWS_READS", "20"))
PORT = os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]
TOKEN = os.environ["AWS_SESSION_TOKEN"]
URL = f"http://127.0.0.1:{PORT}/secretsmanager/get?secretId={urllib.parse.quote(SECRET, safe='')}"
HEADERS = {"X-Aws-Parameters-Secrets-Token": TOKEN}

boto = boto3.client("secretsmanager", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
caching = SecretCache(config=SecretCacheConfig(), client=boto)


def client():
    return lambda_secrets_cache.get_secret_string(SECRET)


def urllib_read():
    request = urllib.request.Request(URL, headers=HEADERS)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["SecretString"]


def requests_read():
    return requests.get(URL, headers=HEADERS, timeout=5).json()["SecretString"]


def boto3_read():
    return boto.get_secret_value(SecretId=SECRET)["SecretString"]


def caching_read():
    return caching.get_secret_string(SECRET)


VARIANTS = {
    "client": (client, READS),
    "urllib.request": (urllib_read, READS),
    "requests": (requests_read, READS),
    "boto3 (AWS each read)": (boto3_read, AWS_READS),
    "aws-secretsmanager-caching": (caching_read, READS),
}

times = {name: [] for name in VARIANTS}
expected = client()
for name, (read, _) in VARIANTS.items():
    assert read() == expected, name  # warm: connections, the caching library's first fetch
for r in range(ROUNDS):
    names = list(VARIANTS)
    names = names[r % len(names):] + names[: r % len(names)]
    for name in names:
        read, n = VARIANTS[name]
        out = times[name]
        for _ in range(n):
            started = time.perf_counter_ns()
            read()
            out.append((time.perf_counter_ns() - started) / 1000)
print(json.dumps(times))
