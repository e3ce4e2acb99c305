# Tilewise — everything a fresh Debian/Ubuntu machine needs is installed by these targets.
#   make demo     sample time series -> tilewise:temporalmedian via qgis_process -> COG + PNG quicklook
#   make test     engine tests (engine Python) + QGIS tests (QGIS's Python, real QGIS, headless)
#   make package  dist/tilewise-<version>.zip, for QGIS's "Install from ZIP" and the plugin repository
#   make install  link the plugin into your QGIS profile, enable it, set up the engine environment
#   make test-latest  the tests on the newest releases of every package (not the locked ones)
#   make lock     constraints.txt again, from the newest releases, for Linux, Windows and macOS and Python 3.9-3.14
#                 (then make test-latest, and commit)

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
QGIS_PYTHON ?= /usr/bin/python3
VENV ?= $(ROOT)/.venv
ENGINE_PYTHON := $(VENV)/bin/python
BUILD := $(ROOT)/build
PLUGINS := $(BUILD)/plugins
STAMPS := $(BUILD)/stamps
# fonts-dejavu-core: the dialogs' test draws text offscreen (QT_QPA_PLATFORM=offscreen) for its screenshots.
APT_PACKAGES := qgis qgis-providers python3-qgis python3-gdal gdal-bin python3-pytest python3-venv python3-pip \
                fonts-dejavu-core
# The remote-input tests serve COGs with a real web server; they start it themselves on 127.0.0.1.
# The extraction's HTML plot is loaded in headless Chromium (tests/engine/test_plot.py).
TEST_APT_PACKAGES := nginx chromium
NGINX := $(firstword $(wildcard /usr/sbin/nginx /usr/local/sbin/nginx) $(shell command -v nginx 2>/dev/null))
QGIS_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
INSTALL_VENV ?= $(HOME)/.local/share/tilewise/venv
# The exact versions the engine environment gets (make lock writes it); make test-latest clears LOCK_ARGS.
LOCK := $(ROOT)/constraints.txt
# The lock without its hashes, as pip's constraints of the editable install (pip cannot hash an editable
# project); the locked packages themselves are installed first from the lock, hashes checked.
LOCK_PINS := $(BUILD)/constraints-pins.txt
LOCK_ARGS ?= -c $(LOCK_PINS)
UPGRADE_ARGS ?=
VENV_STAMP = $(VENV)/.tilewise-installed
# The locked engine packages as wheels: tilewise:setupengine installs from them offline in the tests.
WHEELHOUSE := $(BUILD)/wheelhouse
VERSION := $(shell sed -n 's/^version=//p' $(ROOT)/metadata.txt)

export QT_QPA_PLATFORM := offscreen
export TILEWISE_PYTHON := $(ENGINE_PYTHON)
# The lock the engine environment was installed with (empty for make test-latest), for its test.
export TILEWISE_LOCK = $(if $(LOCK_ARGS),$(LOCK),)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all demo test lint test-fast test-engine test-qgis test-qgis-matrix test-latest bench bench-quick bench-extract \
        bench-chips bench-swath bench-kernels install uninstall \
        deps system-deps venv plugin-link warm wheelhouse package lock clean

all: test

deps: system-deps venv plugin-link warm

# QGIS and GDAL from the distribution, only when missing.
system-deps: $(STAMPS)/system $(STAMPS)/nginx
$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@if ! command -v qgis_process >/dev/null 2>&1 || ! $(QGIS_PYTHON) -c "import qgis.core, osgeo.gdal, pytest" >/dev/null 2>&1 \
	    || ! $(QGIS_PYTHON) -m venv --help >/dev/null 2>&1; then \
	  echo ">> installing QGIS and GDAL from the distribution ($(APT_PACKAGES))"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi
	@touch $@

# nginx (remote-input tests) and chromium (the plot's test), without starting nginx's service (policy-rc.d says no).
$(STAMPS)/nginx: Makefile
	@mkdir -p $(STAMPS)
	@if [ -z "$(NGINX)" ] || ! command -v chromium >/dev/null 2>&1; then \
	  echo ">> installing $(TEST_APT_PACKAGES) for the tests (nginx's system service is not started)"; \
	  $(SUDO) apt-get update -qq; \
	  if [ -e /usr/sbin/policy-rc.d ]; then \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(TEST_APT_PACKAGES); \
	  else \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod +x /usr/sbin/policy-rc.d; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(TEST_APT_PACKAGES); \
	    status=$$?; $(SUDO) rm -f /usr/sbin/policy-rc.d; exit $$status; \
	  fi; \
	fi
	@touch $@

# The engine's own Python environment (numpy, numba, rasterio, numexpr, pyogrio, shapely, pyarrow; pytest,
# hypothesis and the reference libraries pandas, xarray, scipy, exactextract, rustac for its tests;
# dask[distributed] for the scaling-out tests), at the locked versions.
venv: $(VENV_STAMP)
$(VENV_STAMP): $(STAMPS)/system pyproject.toml $(LOCK) $(LOCK_PINS)
	@test -x $(ENGINE_PYTHON) || $(QGIS_PYTHON) -m venv $(VENV)
	$(ENGINE_PYTHON) -m pip install -q $(LOCK_ARGS) --upgrade pip
	$(if $(LOCK_ARGS),$(ENGINE_PYTHON) -m pip install -q -r $(LOCK))
	$(ENGINE_PYTHON) -m pip install -q $(LOCK_ARGS) $(UPGRADE_ARGS) -e "$(ROOT)[test,dask]"
	@touch $@

# The kernels compiled into numba's cache (the user's, or NUMBA_CACHE_DIR), as tilewise:setupengine does,
# so that the first run is not slower than the next: every time (about 2 s when they are there already,
# and an edited kernels.py or another cache folder needs them compiled again).
warm: $(VENV_STAMP) plugin-link
	@# from the plugin folder, as QGIS, the demo and the tests import it: numba keys its cache by the source's path
	@cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) -m tilewise.core.runtime.driver --warm > $(BUILD)/warm.log \
	    || { cat $(BUILD)/warm.log; exit 1; }
	@tail -n 1 $(BUILD)/warm.log | $(ENGINE_PYTHON) -c 'import json, sys; r = json.load(sys.stdin)["report"]; \
	    print(">> kernels in numba cache %(cache)s: %(compiled)d compiled, %(loaded)d loaded" % r)'

# The plugin folder must be named 'tilewise' whatever the checkout is called.
plugin-link:
	@mkdir -p $(PLUGINS)
	@ln -sfn $(ROOT) $(PLUGINS)/tilewise

# The engine suite and the QGIS suite side by side (TEST_JOBS=1: one after the other): the engine suite keeps
# about one of 2 cores busy on average (13 CPU-minutes in its 12 minutes), so the QGIS suite runs mostly on the
# other. Each suite's output is printed as a whole when it ends (--output-sync).
TEST_JOBS ?= 2
test: deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target test-engine test-qgis

# ruff (pyproject's [tool.ruff]) and the layers of core/ (pyproject's [tool.importlinter], also a test).
lint: $(VENV_STAMP) plugin-link
	$(ENGINE_PYTHON) -m ruff check $(ROOT)
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(VENV)/bin/lint-imports --no-cache $(ROOT)/pyproject.toml

# The newest release of every package, in a venv of its own: a release that breaks Tilewise shows here first.
test-latest:
	$(MAKE) --no-print-directory test VENV=$(BUILD)/venv-latest LOCK_ARGS= UPGRADE_ARGS="--upgrade --upgrade-strategy eager"

# Doctests import core/ through the plugin link, as tilewise.core.*: numba's on-disk cache records the
# module name, and a cache written under another name (<checkout>.core.*) breaks later imports.
test-engine:
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) -m pytest -p no:cacheprovider -q --durations=15 $(ROOT)/tests/engine --doctest-modules $(PLUGINS)/tilewise/core

# The inner loop: lint and the fast engine tests (tests/engine/conftest.py, FAST_MODULES), under a minute.
test-fast: $(VENV_STAMP) plugin-link lint
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) -m pytest -p no:cacheprovider -q -m fast $(ROOT)/tests/engine

test-qgis: $(WHEELHOUSE)/.complete
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) -m pytest -p no:cacheprovider -q --durations=15 $(ROOT)/tests/qgis

# The QGIS suite on Debian 13 (QGIS 3.40 LTR) and sid (QGIS 3.44), each in a debootstrap chroot
# kept in build/matrix (not part of `make test`: see README, Development). Needs root or sudo.
#   make test-qgis-matrix MATRIX_SUITES=trixie MATRIX_TARGETS="test-engine test-qgis"
MATRIX_SUITES ?= trixie sid
MATRIX_TARGETS ?= test-qgis
test-qgis-matrix:
	MATRIX_TARGETS="$(MATRIX_TARGETS)" $(ROOT)/scripts/qgis_matrix.sh $(MATRIX_SUITES)

demo: deps
	PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) $(ROOT)/scripts/demo.py --engine-python $(ENGINE_PYTHON) --out $(ROOT)/demo-output

# Side by side with QGIS, GDAL, numpy and floors, on noise and on imagery (well over 10 minutes on 2 cores;
# --only picks cases: BENCH_ARGS="--only ndvi,session"); bench-quick is CI's smoke run.
bench: deps $(STAMPS)/bench
	PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) $(ROOT)/scripts/bench.py --engine-python $(ENGINE_PYTHON) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-chips bench-swath

# Image chips against their floor and a SITS-style script, at issue 24's size (1,000 points x 36 dates x 4 bands
# on 5000² scenes, noise and imagery: about 6 GB of inputs made once in build/bench_chips, and 10-15 minutes on
# 2 cores; BENCH_CHIPS_ARGS=--quick for a short run); swath extraction against a sen3r-style one and its floor
# (issue 23's size by default: 1.3 GB of inputs written once into build/bench_swath, a few minutes;
# BENCH_SWATH_ARGS=--reduced for 4 small scenes).
bench-chips: deps $(STAMPS)/bench
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) $(ROOT)/scripts/bench_chips.py --folder $(BUILD)/bench_chips \
	    $(BENCH_CHIPS_ARGS)

bench-swath: deps $(STAMPS)/bench
	@mkdir -p $(ROOT)/bench-output
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) $(ROOT)/scripts/bench_swath.py --folder $(BUILD)/bench_swath \
	    --json $(ROOT)/bench-output/bench_swath.json $(BENCH_SWATH_ARGS)

bench-quick: deps $(STAMPS)/bench
	PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) $(ROOT)/scripts/bench.py --engine-python $(ENGINE_PYTHON) --quick \
	    --out $(BUILD)/bench-quick

# Extraction (issue 11) side by side with QGIS's zonalstatisticsfb / rastersampling looped and exactextract.
bench-extract: deps
	PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) $(ROOT)/scripts/bench_extract.py --engine-python $(ENGINE_PYTHON)

# Float64 medians and percentiles: the 64-bit key search against the per-pixel quickselect it replaced.
bench-kernels: deps
	cd $(PLUGINS) && PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) $(ROOT)/scripts/bench_kernels.py

$(STAMPS)/bench: $(VENV_STAMP)
	$(ENGINE_PYTHON) -m pip install -q $(LOCK_ARGS) -e "$(ROOT)[test,dask,bench]"
	@touch $@

wheelhouse: $(WHEELHOUSE)/.complete
$(WHEELHOUSE)/.complete: $(LOCK) | $(VENV_STAMP) plugin-link
	@rm -rf $(WHEELHOUSE)
	PYTHONPATH=$(PLUGINS) $(ENGINE_PYTHON) -m tilewise.algorithms.environment wheelhouse $(WHEELHOUSE)
	@touch $@

# The plugin as users install it: one top folder tilewise/ (see scripts/package.py).
package:
	$(QGIS_PYTHON) $(ROOT)/scripts/package.py --out $(ROOT)/dist

$(LOCK_PINS): $(LOCK)
	@mkdir -p $(BUILD)
	sed -e '/^ *--hash=/d' -e 's/ *\\$$//' $(LOCK) > $@

# uv resolves the lock for every platform (scripts/lock.py); it lives in build/uv, not in the engine's venv.
UV_VENV := $(BUILD)/uv
lock:
	@test -x $(UV_VENV)/bin/uv || { $(QGIS_PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/pip install -q uv==0.13.9; }
	$(QGIS_PYTHON) $(ROOT)/scripts/lock.py --uv $(UV_VENV)/bin/uv

# Link into the QGIS profile, enable it (QGIS and qgis_process), set up the engine as tilewise:setupengine does.
install: system-deps plugin-link
	@mkdir -p $(QGIS_PROFILE)/python/plugins $(QGIS_PROFILE)/QGIS
	ln -sfn $(ROOT) $(QGIS_PROFILE)/python/plugins/tilewise
	$(QGIS_PYTHON) $(ROOT)/scripts/enable_plugin.py $(QGIS_PROFILE)/QGIS/QGIS3.ini
	PYTHONPATH=$(PLUGINS) $(QGIS_PYTHON) -m tilewise.algorithms.environment setup --venv $(INSTALL_VENV)
	@echo "Tilewise installed: restart QGIS, or run: qgis_process.bin run tilewise:temporalmedian -- INPUT=a.tif INPUT=b.tif OUTPUT=median.tif"

uninstall:
	rm -f $(QGIS_PROFILE)/python/plugins/tilewise
	rm -rf $(INSTALL_VENV)

clean:
	rm -rf --one-file-system $(BUILD) dist demo-output bench-output *.egg-info
