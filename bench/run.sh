#!/usr/bin/env bash
# `make bench`: release build and the layers, then the cached-read benchmark against nginx (wrk),
# start-up, RSS, binary size and upstream-call counts, the runtime and build comparisons, the
# post-runtime duration per invocation, and the cold-start benchmark with a real Python runtime.
# Writes bench/RESULTS.md. Installs wrk and nginx (Debian packages) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
APT="apt-get"; [ "$(id -u)" = 0 ] || APT="sudo apt-get"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || command -v "/usr/sbin/$tool" >/dev/null || {
    pkg=$tool; [ "$tool" = nginx ] && pkg=nginx-light
    DEBIAN_FRONTEND=noninteractive $APT install -y -q "$pkg" >/dev/null || { $APT update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $APT install -y -q "$pkg" >/dev/null; }
  }
done
export PATH="$PATH:/usr/sbin"
make venv >/dev/null
cargo build --release --workspace --quiet
make layer >/dev/null
{
  ./target/release/lsc-dev bench-http --extension ./target/release/lambda-secrets-cache --runs "${RUNS:-3}" --seconds "${SECONDS_PER_RUN:-5}"
  echo
  echo "## The async runtime: current-thread against multi-thread"
  echo
  ./target/release/lsc-dev bench-runtime --extension ./target/release/lambda-secrets-cache --rounds 5 --runs "${RUNS:-3}" --seconds "${SECONDS_PER_RUN:-5}"
  echo
  echo "## The layer build (zig-linked against glibc 2.26) against a plain \`cargo build --release\`"
  echo
  ./target/release/lsc-dev bench-builds --build "cargo build (host glibc 2.36)=./target/release/lambda-secrets-cache" \
    --build "zig, glibc 2.26 (x86_64 layer)=./target/x86_64-unknown-linux-gnu/release/lambda-secrets-cache" \
    --rounds 5 --runs "${RUNS:-3}" --seconds "${SECONDS_PER_RUN:-5}"
  echo
  echo "## What the extension adds to each invocation (post-runtime duration)"
  echo
  ./target/release/lsc-dev bench-post-runtime --extension ./target/release/lambda-secrets-cache --invocations 200
  echo
  echo "## Cold start and reads as a Python function sees them (awslambdaric, AWS latency ${COLD_START_LATENCY_MS:-40} ms)"
  echo
  ./target/release/lsc-dev bench-cold-start --extension ./target/release/lambda-secrets-cache --rounds "${COLD_START_ROUNDS:-5}" --latency-ms "${COLD_START_LATENCY_MS:-40}"
  echo
  echo "## A fleet's burst against AWS's quotas (\`lsc-dev bench-fleet\`)"
  echo
  ./target/release/lsc-dev bench-fleet --extension ./target/release/lambda-secrets-cache
  echo
  echo "## Hot path (criterion, \`cargo bench --bench hot_path\`)"
  echo
  echo "Each iteration includes a current-thread \`block_on\` where the code is async."
  echo
  echo "| benchmark | time (median estimate) |"
  echo "|---|---|"
  cargo bench --quiet --bench hot_path -- --noplot 2>/dev/null | awk '
    /time:/ { pre = $0; sub(/ *time:.*/, "", pre); if (pre != "") name = pre
              sub(/.*time: *\[/, ""); split($0, t, " "); printf "| %s | %s %s |\n", name, t[3], t[4]; next }
    NF && !/^(Found|Benchmarking|  )/ { name = $0; sub(/ +$/, "", name) }'
} | tee bench/RESULTS.md
