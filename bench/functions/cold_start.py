"""The cold-start benchmark's function (lsc-dev bench-cold-start): one handler, the same for
every variant apart from how it reads its secret, chosen by BENCH_READ_WITH:

- extension: GET from lambda-secrets-cache (or any drop-in) on 127.0.0.1
- boto3:     secretsmanager.get_secret_value in the handler (client made at init)
- caching:   AWS's aws-secretsmanager-caching SecretCache (client and cache made at init)
- none:      no read (the floor)

Each invocation answers when the secret was in hand (Unix ms), how long the read took and the
cache's X-Cache header; never the value.
"""
import json
import os
import time
import urllib.parse
import urllib.request

MODE = os.environ["BENCH_READ_WITH"]
SECRET_ID = os.environ["BENCH_SECRET_ID"]

if MODE in ("boto3", "caching"):
    import boto3

    client = boto3.client("secretsmanager")
if MODE == "caching":
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

    cache = SecretCache(config=SecretCacheConfig(), client=client)

URL = "http://127.0.0.1:{}/secretsmanager/get?secretId={}".format(
    os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773"), urllib.parse.quote(SECRET_ID, safe="")
)
HEADERS = {"X-Aws-Parameters-Secrets-Token": os.environ.get("AWS_SESSION_TOKEN", "")}


def read():
    if MODE == "extension":
        with urllib.request.urlopen(urllib.request.Request(URL, headers=HEADERS), timeout=10) as response:
            return json.load(response)["SecretString"], response.headers.get("X-Cache")
    if MODE == "boto3":
        return client.get_secret_value(SecretId=SECRET_ID)["SecretString"], None
    if MODE == "caching":
        return cache.get_secret_string(SECRET_ID), None
    return "", None


def handler(event, context):
    started = time.perf_counter()
    value, cache_result = read()
    took = time.perf_counter() - started
    return {"at_ms": time.time() * 1000, "read_ms": took * 1000, "cache": cache_result, "length": len(value)}
