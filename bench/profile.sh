#!/usr/bin/env bash
# Where a cached read's CPU goes: the extension (release code generation, with symbols:
# `--profile profiling`) serves one 4 KiB secret from moto's stand-in while wrk reads it at
# 64 connections, and `perf record` samples the extension process. Prints the top symbols and
# the split between our code, hyper/tokio, the allocator, libc and the kernel.
#   bench/profile.sh [seconds] [connections]
# Needs perf (Debian: linux-perf) and wrk; falls back to valgrind --tool=callgrind over a
# fixed number of requests when perf cannot open events (perf_event_paranoid, containers).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-10}
CONNS=${2:-64}
make venv >/dev/null
cargo build --quiet --profile profiling --bin lambda-secrets-cache
BIN=./target/profiling/lambda-secrets-cache
WORK=$(mktemp -d)
cleanup() { kill "$EXT_PID" "$MOTO_PID" 2>/dev/null || true; [ -n "${KEEP_PERF:-}" ] && cp "$WORK/perf.data" "$KEEP_PERF"; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" && break; sleep 0.1; done
VALUE=$(head -c 3072 /dev/urandom | base64 -w0 | head -c 4096)
curl -s -o /dev/null -X POST "http://127.0.0.1:$MOTO_PORT/" \
  -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: secretsmanager.CreateSecret' \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0' \
  -d "{\"Name\":\"profile/secret\",\"SecretString\":\"$VALUE\"}"
printf 'secrets:\n  - id: profile/secret\n' >"$WORK/config.yaml"

PORT=$(free_port)
AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test \
  AWS_SECRET_ACCESS_KEY=test AWS_SESSION_TOKEN=profile-token PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=$PORT \
  SECRETS_CACHE_CONFIG="$WORK/config.yaml" SECRETS_MANAGER_TTL=86400 PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL=warn \
  "$BIN" serve >"$WORK/ext.log" 2>&1 &
EXT_PID=$!
URL="http://127.0.0.1:$PORT/secretsmanager/get?secretId=profile%2Fsecret"
for _ in $(seq 100); do curl -sf -o /dev/null -H "X-Aws-Parameters-Secrets-Token: profile-token" "$URL" && break; sleep 0.1; done

echo "# Profile of cached reads: 4 KiB secret, $CONNS connections, ${SECONDS_TO_RUN} s, $(nproc) cores"
if perf record -q -F 1999 -g -o "$WORK/perf.data" -p "$EXT_PID" -- sleep 0.1 >/dev/null 2>&1; then
  wrk -t 2 -c "$CONNS" -d "$((SECONDS_TO_RUN + 2))s" -H "X-Aws-Parameters-Secrets-Token: profile-token" "$URL" >"$WORK/wrk.txt" &
  WRK_PID=$!
  sleep 1
  perf record -q -F 1999 -o "$WORK/perf.data" -p "$EXT_PID" -- sleep "$SECONDS_TO_RUN" >/dev/null 2>&1
  wait "$WRK_PID"
  grep -E 'Requests/sec' "$WORK/wrk.txt"
  echo
  echo "## By object (share of samples)"
  perf report -q -i "$WORK/perf.data" --no-children --sort dso --percent-limit 0.5 2>/dev/null | sed 's/^ *//'
  echo
  echo "## Inside the extension binary, by crate (share of all samples)"
  perf report -q -i "$WORK/perf.data" --no-children --dsos "$(basename "$BIN")" --sort symbol 2>/dev/null |
    awk '$1 ~ /%$/ { pct = $1; sub(/%/, "", pct); sym = $0; sub(/^[^]]*\] /, "", sym)
           crate = sym; sub(/^</, "", crate); sub(/::.*/, "", crate); sub(/ as .*/, "", crate)
           if (sym ~ /lambda_secrets_cache/) crate = "lambda_secrets_cache (incl. inlined callees)"
           total[crate] += pct }
         END { for (c in total) printf "%6.2f%%  %s\n", total[c], c }' | sort -rn | head -12
  echo
  echo "## Top symbols"
  perf report -q -i "$WORK/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 2>/dev/null | sed 's/^ *//' | cut -c1-160 | head -40
else
  echo "perf cannot sample here; using callgrind over 20000 requests instead"
  kill "$EXT_PID"
  PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=$PORT AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_SESSION_TOKEN=profile-token \
    SECRETS_CACHE_CONFIG="$WORK/config.yaml" SECRETS_MANAGER_TTL=86400 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" serve >"$WORK/ext.log" 2>&1 &
  EXT_PID=$!
  for _ in $(seq 300); do curl -sf -o /dev/null -H "X-Aws-Parameters-Secrets-Token: profile-token" "$URL" && break; sleep 0.2; done
  wrk -t 1 -c 4 -d 20s -H "X-Aws-Parameters-Secrets-Token: profile-token" "$URL" | grep Requests
  kill -INT "$EXT_PID"; wait "$EXT_PID" || true
  callgrind_annotate "$WORK/cg.out" 2>/dev/null | head -60
fi
