#!/usr/bin/env bash
# `make bench`: release build and the layers, then the cached-read benchmark against nginx (wrk),
# start-up, RSS, binary size and upstream-call counts, the runtime and build comparisons, the
# post-runtime duration per invocation, the start-up against a null extension (x86_64, and the
# arm64 layer under qemu), the root certificates' cost, and the cold-start benchmark with a real
# Python runtime.
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
# The null extension for arm64, linked like the layer, for the start-up comparison under qemu.
PATH="$PWD/.venv/bin:$PATH" cargo zigbuild --quiet --release -p lsc-null-extension --target aarch64-unknown-linux-gnu.2.26
make tools >/dev/null
# criterion's output as table rows: a benchmark's name, its median estimate.
CRITERION_TABLE='
  /time:/ { pre = $0; sub(/ *time:.*/, "", pre); if (pre != "") name = pre
            sub(/.*time: *\[/, ""); split($0, t, " "); printf "| %s | %s %s |\n", name, t[3], t[4]; next }
  NF && !/^(Found|Benchmarking|  )/ { name = $0; sub(/ +$/, "", name) }'
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
  echo "## What the extension adds to every cold start (exec → \`/register\`, \`/next\`)"
  echo
  ./target/release/lsc-dev bench-startup --extension ./target/release/lambda-secrets-cache --rounds "${STARTUP_ROUNDS:-15}"
  echo
  echo "The arm64 layer binary and an arm64 null extension, both under qemu-user (emulated: compare the differences, not the times):"
  echo
  ./target/release/lsc-dev bench-startup --extension ./target/aarch64-unknown-linux-gnu/release/lambda-secrets-cache \
    --null ./target/aarch64-unknown-linux-gnu/release/lsc-null-extension \
    --runner "qemu-aarch64-static -L /usr/aarch64-linux-gnu" --rounds "${STARTUP_ROUNDS:-15}"
  echo
  echo "## Root certificates for the AWS clients (criterion, \`cargo bench --bench roots\`)"
  echo
  echo "Debian's layout (this machine) and Amazon Linux 2023's, recreated. Built after \`/register\`, off the async thread."
  echo
  echo "| benchmark | time (median estimate) |"
  echo "|---|---|"
  cargo bench --quiet --bench roots -- --noplot 2>/dev/null | awk "$CRITERION_TABLE"
  echo
  echo "## What the extension adds to each invocation (post-runtime duration)"
  echo
  ./target/release/lsc-dev bench-post-runtime --extension ./target/release/lambda-secrets-cache --invocations 200
  echo
  echo "## Cold start and reads as a Python function sees them (awslambdaric, AWS latency ${COLD_START_LATENCY_MS:-40} ms)"
  echo
  ./target/release/lsc-dev bench-cold-start --extension ./target/release/lambda-secrets-cache --rounds "${COLD_START_ROUNDS:-5}" --latency-ms "${COLD_START_LATENCY_MS:-40}"
  echo
  echo "## A cached read as the function's code pays it: the clients against the other ways (\`lsc-dev bench-clients\`)"
  echo
  echo "On one CPU (\`taskset -c 0\`: the function and the extension share it, as on a function with up to 1,769 MB, which has one vCPU):"
  echo
  taskset -c 0 ./target/release/lsc-dev bench-clients --extension ./target/release/lambda-secrets-cache --freeze-cycles 0
  echo
  echo "On two CPUs, then the freezes:"
  echo
  ./target/release/lsc-dev bench-clients --extension ./target/release/lambda-secrets-cache --freeze-cycles "${FREEZE_CYCLES:-20}"
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
  cargo bench --quiet --bench hot_path -- --noplot 2>/dev/null | awk "$CRITERION_TABLE"
} | tee bench/RESULTS.md
