"""A handler that uses every function of the Python client (from the layer's python/) and its
Powertools provider; tests/clients.rs runs it under awslambdaric. It answers what each call
returned (kinds and sizes, never values) or which error it raised."""
import os

import lambda_secrets_cache as cache
from aws_lambda_powertools.utilities import parameters

cache.use_with_powertools()


def _shape(value):
    if isinstance(value, dict):
        return sorted(value)
    if isinstance(value, (str, bytes)):
        return {"type": type(value).__name__, "length": len(value)}
    return value


def _run(name, call, out):
    try:
        out[name] = {"ok": _shape(call())}
    except cache.LambdaSecretsCacheError as e:
        out[name] = {"error": type(e).__name__, "status": e.status, "code": e.code}
    except Exception as e:  # Powertools wraps ours; a JSON error of ours
        cause = e.__cause__ or e.__context__
        out[name] = {"error": type(e).__name__, "cause": type(cause).__name__ if cause else None}


def _wrong_token(call):
    saved = os.environ["AWS_TOKEN"]
    os.environ["AWS_TOKEN"] = "not-the-token"
    try:
        return call()
    finally:
        os.environ["AWS_TOKEN"] = saved


def handler(event, context):
    s, j, b, p, missing = event["secret"], event["json"], event["binary"], event["parameter"], event["missing"]
    calls = {
        "get_secret": lambda: cache.get_secret(s),
        "get_secret_string": lambda: cache.get_secret_string(s),
        "get_secret_json": lambda: cache.get_secret_json(j),
        "get_secret_binary": lambda: cache.get_secret_binary(b),
        "get_parameter": lambda: cache.get_parameter(p, with_decryption=True)["Parameter"],
        "get_parameter_value": lambda: cache.get_parameter_value(p),
        "refresh": lambda: cache.get_secret_string(s, refresh=True),
        "version_stage": lambda: cache.get_secret_string(s, version_stage="AWSCURRENT"),
        "not_found": lambda: cache.get_secret(missing),
        "parameter_not_found": lambda: cache.get_parameter("/" + missing),
        "bad_request": lambda: cache.get_secret(s, version_id="x", version_stage="AWSCURRENT"),
        "not_json": lambda: cache.get_secret_json(s),
        "not_binary": lambda: cache.get_secret_binary(s),
        "token_rejected": lambda: _wrong_token(lambda: cache.get_secret(s)),
        "powertools_secret": lambda: parameters.get_secret(j, transform="json"),
        "powertools_parameter": lambda: parameters.get_parameter(p),
        "powertools_not_found": lambda: parameters.get_secret(missing),
    }
    out = {}
    for name in event.get("only") or calls:
        _run(name, calls[name], out)
    return out
