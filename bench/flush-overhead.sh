#!/usr/bin/env bash
# What the extension adds after the function is done: platform.runtimeDone delivered -> /next,
# per invocation, with and without OTLP export (loopback receiver, rotel over HTTP and gRPC, a
# collector that is down). Builds release first; needs the .venv (make venv) for moto and rotel.
set -euo pipefail
cd "$(dirname "$0")/.."
make venv >/dev/null
cargo build --release --workspace --quiet
./target/release/lsc-dev bench-flush --extension ./target/release/lambda-secrets-cache --invocations "${1:-200}"
