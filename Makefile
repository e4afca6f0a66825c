# lambda-secrets-cache — the two commands are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
CARGO ?= cargo

.PHONY: demo test venv tools node-ric build release layer layer-test clients-test bench fuzz lint clean

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## Debian packages the tests use: promtool (prometheus) evaluates the dashboards' PromQL;
## qemu-user-static and the arm64 glibc (libc6-arm64-cross) run the arm64 layer binary.
APT := DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get
APT_INSTALL = $(APT) install -y -q $(1) >/dev/null 2>&1 || { $(APT) update -q >/dev/null && $(APT) install -y -q $(1) >/dev/null; }
ARM64_SYSROOT := /usr/aarch64-linux-gnu
tools:
	@command -v promtool >/dev/null || { echo "installing promtool (Debian package prometheus)"; $(call APT_INSTALL,prometheus); }
	@command -v qemu-aarch64-static >/dev/null && test -e $(ARM64_SYSROOT)/lib/ld-linux-aarch64.so.1 || \
	  { echo "installing qemu-user-static and libc6-arm64-cross"; $(call APT_INSTALL,qemu-user-static libc6-arm64-cross); }

## AWS's Node.js runtime interface client (aws-lambda-ric, pinned by
## devtools/runtimes/node/package-lock.json) for `lsc-dev lambda --handler x.handler` with a
## Node.js handler. Its install scripts build its native client (aws-lambda-cpp, curl) from
## source, with cmake and autotools from Debian. 3.3.0: 4.x needs Node.js 22, Debian has 20.
NODE_RIC := devtools/runtimes/node/node_modules/aws-lambda-ric/dist/rapid-client.node
$(NODE_RIC): devtools/runtimes/node/package-lock.json
	@command -v cmake >/dev/null && command -v autoreconf >/dev/null && command -v libtoolize >/dev/null || \
	  { echo "installing cmake and autotools (aws-lambda-ric builds its native client)"; $(call APT_INSTALL,cmake autoconf automake libtool); }
	cd devtools/runtimes/node && npm ci --no-audit --no-fund --loglevel=error
	test -f $@ && touch $@

node-ric: $(NODE_RIC)

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

## The layers, one per architecture: extensions/lambda-secrets-cache (0755), release profile,
## linked by zig (cargo-zigbuild and ziglang pinned in requirements-dev.txt) against glibc
## $(LAYER_GLIBC) so they start on Amazon Linux 2 and 2023 runtimes. layer.py refuses a binary
## for the wrong machine, above GLIBC_$(LAYER_GLIBC) or needing a library Lambda lacks.
LAYER_GLIBC := 2.26
LAYER_ARCHS := x86_64:x86_64-unknown-linux-gnu arm64:aarch64-unknown-linux-gnu
layer_bin = target/$(1)/release/lambda-secrets-cache
layer: $(STAMP)
	rustup target add $(foreach a,$(LAYER_ARCHS),$(word 2,$(subst :, ,$(a))))
	PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) zigbuild --release --bin lambda-secrets-cache \
	  $(foreach a,$(LAYER_ARCHS),--target $(word 2,$(subst :, ,$(a))).$(LAYER_GLIBC))
	$(foreach a,$(LAYER_ARCHS),python3 packaging/layer.py --arch $(word 1,$(subst :, ,$(a))) --max-glibc $(LAYER_GLIBC) \
	  $(call layer_bin,$(word 2,$(subst :, ,$(a)))) target/lambda-secrets-cache-layer-$(word 1,$(subst :, ,$(a))).zip &&) true

## The integration suite against each layer binary: x86_64 natively, arm64 under qemu
## (LSC_EXTENSION_BIN / LSC_EXTENSION_RUNNER, read by devtools and tests/common).
QEMU_ARM64 := qemu-aarch64-static -L $(ARM64_SYSROOT)
layer-test: layer tools
	set -o pipefail; LSC_EXTENSION_BIN=$(abspath $(call layer_bin,x86_64-unknown-linux-gnu)) \
	  $(CARGO) test -p lambda-secrets-cache --tests 2>&1 | tee target/layer-test-x86_64.log
	set -o pipefail; LSC_EXTENSION_BIN=$(abspath $(call layer_bin,aarch64-unknown-linux-gnu)) LSC_EXTENSION_RUNNER="$(QEMU_ARM64)" \
	  $(CARGO) test -p lambda-secrets-cache --tests 2>&1 | tee target/layer-test-arm64.log
	@$(call summary,target/layer-test-x86_64.log,x86_64 layer binary)
	@$(call summary,target/layer-test-arm64.log,arm64 layer binary under qemu)

## The function-side clients' own tests (clients/python, clients/node): the wire, the retry,
## every error mapping, against scripted servers. Under real runtimes: tests/clients.rs.
clients-test: $(STAMP)
	$(VENV)/bin/python -m unittest discover -s clients/python/tests
	node --test clients/node/test/

## Benchmarks (wrk vs nginx, start-up, RSS, size, flush overhead) → bench/RESULTS.md.
bench: $(STAMP) node-ric
	bash bench/run.sh

## The extension against moto, with a scripted series of reads and a summary.
demo: $(STAMP) release
	./target/release/lsc-dev demo --extension ./target/release/lambda-secrets-cache

summary = awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests ($(2)): %d passed, %d failed\n", p, f }' $(1)

## Every test: unit, integration (against moto), devtools, on the host build; then the
## integration suite again against both layer binaries (layer-test).
test: $(STAMP) tools node-ric
	@df -Pk . | awk 'NR == 2 { printf "disk: %.1f GB free here; a fresh make test takes ~4.5 GB\n", $$4 / 1048576 }'
	$(CARGO) build --workspace --bins
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee target/test.log
	$(MAKE) --no-print-directory clients-test
	$(MAKE) --no-print-directory layer-test
	@$(call summary,target/test.log,host build)

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
