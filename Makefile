# lambda-secrets-cache — the two commands are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
CARGO ?= cargo

.PHONY: demo test venv tools build release layer bench fuzz lint clean

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## promtool (Debian package prometheus) evaluates the dashboards' PromQL in tests.
APT := DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get
tools:
	@command -v promtool >/dev/null || { echo "installing promtool (Debian package prometheus)"; \
	  $(APT) install -y -q prometheus >/dev/null 2>&1 || { $(APT) update -q >/dev/null && $(APT) install -y -q prometheus >/dev/null; }; }

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

## The layer zip: extensions/lambda-secrets-cache (0755) from the release build, x86_64 gnu.
layer: release
	python3 packaging/layer.py target/release/lambda-secrets-cache target/lambda-secrets-cache-layer.zip

## Benchmarks (wrk vs nginx, start-up, RSS, size, flush overhead) → bench/RESULTS.md.
bench: $(STAMP)
	bash bench/run.sh

## The extension against moto, with a scripted series of reads and a summary.
demo: $(STAMP) release
	./target/release/lsc-dev demo --extension ./target/release/lambda-secrets-cache

## Every test: unit, integration (against moto), devtools.
test: $(STAMP) tools
	$(CARGO) build --workspace --bins
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

## Fuzz the parsers that take outside input (cargo-fuzz; needs a nightly toolchain), each for
## FUZZ_SECONDS. The seeds in fuzz/seeds are read; what libFuzzer adds goes to fuzz/corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := query config telemetry platform_event
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz --version 0.13.2
	cd fuzz && mkdir -p target && for t in $(FUZZ_TARGETS); do mkdir -p corpus/$$t && \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=8192 2>&1 | \
	  tee target/fuzz-$$t.log | grep -E '^(Done|==|SUMMARY|thread .* panicked)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(VENV) target
