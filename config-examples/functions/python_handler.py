"""Reading a secret through lambda-secrets-cache from a Python function (no SDK needed)."""
import json
import os
import urllib.parse
import urllib.request

PORT = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773")
TOKEN = os.environ["AWS_SESSION_TOKEN"]


def get_secret(secret_id: str) -> str:
    url = f"http://127.0.0.1:{PORT}/secretsmanager/get?secretId={urllib.parse.quote(secret_id, safe='')}"
    headers = {"X-Aws-Parameters-Secrets-Token": TOKEN}
    # Pass the invocation's trace along so the cache's span joins it.
    trace = os.environ.get("_X_AMZN_TRACE_ID")
    if trace:
        headers["X-Amzn-Trace-Id"] = trace
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return json.load(response)["SecretString"]


def handler(event, context):
    credentials = json.loads(get_secret("prod/db/credentials"))
    return {"user": credentials["username"]}
