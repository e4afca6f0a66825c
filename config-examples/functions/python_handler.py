"""Reading a secret and a parameter through lambda-secrets-cache from a Python function (no SDK
needed). Try it locally with the cache, against moto or your own AWS:

    lsc-dev lambda --handler config-examples/functions/python_handler.handler -- ./lambda-secrets-cache

The event may name what to read: {"secrets": [...], "parameters": [...], "concurrency": 8}.
The answer says what was read, how, and how long it took; never a value.
"""
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PORT = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773")
TOKEN = os.environ["AWS_SESSION_TOKEN"]


def _get(path: str):
    headers = {"X-Aws-Parameters-Secrets-Token": TOKEN}
    # Pass the invocation's trace along so the cache's span joins it.
    trace = os.environ.get("_X_AMZN_TRACE_ID")
    if trace:
        headers["X-Amzn-Trace-Id"] = trace
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("X-Cache"), json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("X-Cache"), None


def get_secret(secret_id: str):
    return _get(f"/secretsmanager/get?secretId={urllib.parse.quote(secret_id, safe='')}")


def get_parameter(name: str, with_decryption: bool = True):
    query = urllib.parse.urlencode({"name": name, "withDecryption": str(with_decryption).lower()})
    return _get(f"/systemsmanager/parameters/get?{query}")


def _timed(kind: str, key: str):
    started = time.perf_counter()
    status, cache, body = get_secret(key) if kind == "secret" else get_parameter(key)
    read = {"kind": kind, "id": key, "status": status, "cache": cache,
            "ms": round((time.perf_counter() - started) * 1000, 3)}
    if body is not None:
        value = body["SecretString"] if kind == "secret" else body["Parameter"]["Value"]
        read["length"] = len(value)
        if kind == "secret" and value.startswith("{"):
            # A JSON secret: say which fields it has (names, not values).
            read["fields"] = sorted(json.loads(value))
    return read


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    wanted = [("secret", s) for s in event.get("secrets", ["prod/db/credentials"])]
    wanted += [("parameter", p) for p in event.get("parameters", ["/prod/app/flags"])]
    with ThreadPoolExecutor(max_workers=max(1, int(event.get("concurrency", 1)))) as pool:
        reads = list(pool.map(lambda w: _timed(*w), wanted))
    print(f"read {len(reads)} item(s): {[(r['id'], r['status'], r['cache']) for r in reads]}")
    return {"reads": reads, "remaining_ms": context.get_remaining_time_in_millis()}
