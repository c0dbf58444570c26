# eurelay: `make run` starts the all-in-one server, `make test` runs the whole suite.
# Both set up what they need (a virtualenv in .venv, and for tests the apt packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz attack setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/eurelay serve $(ARGS)

# Tests run inside a private network namespace (unshare -n) so that no packet can leave
# the machine, even by mistake; only loopback exists in there. What needs a registry is
# done before: the container test's image is built here (once per change of its inputs),
# and node-datachannel is installed from npm.
test: $(STAMP)
	./scripts/test-deps.sh
	./scripts/ffmpeg-venv.sh
	./scripts/node-clients.sh
	./scripts/container-image.sh
	$(BIN)/ruff check relay signaling regions tests bench
	$(BIN)/mypy
	unshare -n sh -c 'ip link set lo up && $(BIN)/pytest -q $(PYTEST_ARGS)'

lint: $(STAMP)
	$(BIN)/ruff check relay signaling regions tests bench
	$(BIN)/ruff format --check relay signaling regions tests bench
	$(BIN)/mypy

bench: $(STAMP)
	unshare -n sh -c 'ip link set lo up && $(BIN)/python -m bench.run --write docs/BENCHMARKS.md'

# Every fuzz target (tests/fuzz/targets.py) coverage-guided for FUZZ_SECONDS each, one after
# another, at the lowest priority and in a private network namespace. A failure is kept in
# tests/fuzz/regressions/<target>/, which make test replays. FUZZ_TARGETS picks some;
# FUZZ_ENGINE=hypothesis runs the structured strategies instead of atheris.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
FUZZ_ENGINE ?= atheris
fuzz: $(STAMP)
	@# atheris (libFuzzer for Python) has wheels for CPython on Linux x86-64 only: not a dev extra
	$(BIN)/pip install -q 'atheris>=2.3' || echo "atheris did not install; use FUZZ_ENGINE=hypothesis"
	unshare -n sh -c 'ip link set lo up && nice -n 19 $(BIN)/python -m tests.fuzz.run \
		--engine $(FUZZ_ENGINE) --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)'

# The outsider's attack on a real node with a victim call measured throughout (docs/SECURITY.md,
# "Attack re-run"); 10.77.0.0/24 made local in the namespace: the attacker's addresses.
attack: $(STAMP)
	unshare -n sh -c 'ip link set lo up && ip route add local 10.77.0.0/24 dev lo && \
		$(BIN)/python -m tests.security.attack $(ARGS)'

clean:
	rm -rf $(VENV) .venv-ffmpeg .pytest_cache .mypy_cache .ruff_cache .fuzz
