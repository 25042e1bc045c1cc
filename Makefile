# l2fast build, test and demo entry points. Every target installs what it needs itself, so a fresh
# clone needs only what the machine ships (python3 >= 3.11, make, apt-get). Run as root: raw
# sockets and network namespaces need it.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
FUZZ_SECONDS ?= 60
# Debian packages: a C compiler for the cffi core, clang + libFuzzer runtime for `make fuzz`,
# iproute2 for the lab, iperf3, netcat and tar for the benchmark baselines, linux-perf for the
# profile the benchmarks print where a target is not met (bench/cpu_profile.py).
APT_PACKAGES := gcc clang libclang-rt-14-dev iproute2 iperf3 netcat-openbsd iputils-ping util-linux \
                tar linux-perf

.PHONY: all demo install system-deps test lint typecheck pytest fuzz bench bench-core \
        bench-small-files bench-memory bench-profile clean

all: install

## demo: install everything, then run the lab demo (transfer and chat between two namespaces)
demo: install
	$(VENV)/bin/l2fast demo

## install: system packages (apt), a venv in .venv, the package with its C core, test tools
install: $(STAMP)

$(STAMP): setup.py pyproject.toml $(wildcard csrc/*.c csrc/*.h csrc/*.py)
	@$(MAKE) --no-print-directory system-deps
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "l2fast needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade cffi 'setuptools>=77' wheel
	$(VPY) -m pip install -q --disable-pip-version-check --no-build-isolation -e '.[test]'
	@# Bytecode written now: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines),
	@# every l2fast command would otherwise compile the package from source, ~0.3 s each.
	$(VPY) -m compileall -q l2fast
	touch $(STAMP)

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "l2fast: need root to apt-get install:$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## test: lint, type check, and the whole test suite (unit, integration in namespaces, fuzz)
test: install lint typecheck pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

# pytest exits 5 when no test ran; make treats that as the failure it is. The 20 slowest
# tests are listed at the end: the suite must stay well under 15 minutes, and that list
# shows where its time goes.
pytest:
	$(VPY) -m pytest -q --durations=20

## fuzz: run each libFuzzer target (C batch parser, receive path, echo, streaming burst) for FUZZ_SECONDS (ASan + UBSan)
fuzz: install
	tests/fuzz/run.sh $(FUZZ_SECONDS) fuzz_parse_batch
	tests/fuzz/run.sh $(FUZZ_SECONDS) fuzz_rxwindow
	tests/fuzz/run.sh $(FUZZ_SECONDS) fuzz_echo
	tests/fuzz/run.sh $(FUZZ_SECONDS) fuzz_txstream

## bench: the C core, the comparison with kernel TCP (profiled where a target is missed) and
## many small files (see BENCHMARKS.md and bench/README.md); BENCH_ARGS go to compare.py
bench-core: install
	$(VPY) bench/core.py

bench: bench-core
	$(VPY) bench/compare.py --scaling $(BENCH_ARGS)
	$(VPY) bench/small_files.py

## bench-small-files: 10 000 x 4 KiB files, l2fast send against tar | nc
bench-small-files: install
	$(VPY) bench/small_files.py

## bench-memory: receiver memory during one 8 GiB sparse-source transfer (needs ~9 GiB of RAM)
bench-memory: install
	$(VPY) bench/memory.py

## bench-profile: where the CPU goes in one l2fast send and one l2fast bench (perf)
bench-profile: install
	$(VPY) bench/cpu_profile.py

clean:
	rm -rf build dist *.egg-info tests/fuzz/build l2fast/_core*.so l2fast/_core.c
