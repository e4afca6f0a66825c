"""One read through the Python client per invocation (default settings): `lsc-dev
bench-clients` freezes the environment longer than 10 s between invocations and counts failed
reads."""
import lambda_secrets_cache as cache


def handler(event, context):
    try:
        return {"ok": len(cache.get_secret_string(event["secret"]))}
    except Exception as e:  # counted, never a value
        return {"error": type(e).__name__}
