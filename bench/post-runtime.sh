#!/usr/bin/env bash
# What the extension adds to each invocation's bill: the runtime's response -> its next /next,
# against a null extension in the same environment, with and without OTLP export (loopback
# receiver, rotel over HTTP and gRPC, a collector that is down or hung, each flush policy) and
# with a refresh-ahead due. Builds release first; needs the .venv (make venv) for moto and rotel.
set -euo pipefail
cd "$(dirname "$0")/.."
make venv >/dev/null
cargo build --release --workspace --quiet
./target/release/lsc-dev bench-post-runtime --extension ./target/release/lambda-secrets-cache --invocations "${1:-200}"
