# Single entry point for developing and testing the qemu.vm collection.
# Run `make help` for the list of targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
SANITY_PYTHON ?= 3.11

VENV := $(CURDIR)/.venv
VENV_BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.requirements-installed

COLLECTIONS_DIR := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS_DIR)/ansible_collections/qemu/vm
SANITY_ROOT := $(CURDIR)/build/sanity/ansible_collections/qemu/vm
GET_PIP := $(CURDIR)/tests/sanity-bootstrap/get_pip.py
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache

# Debian packages needed to build the test guest and run real VMs.
APT_PACKAGES := qemu-system-x86 qemu-utils qemu-guest-agent busybox-static \
	e2fsprogs dbus rsync shellcheck git make python3 python3-venv ca-certificates

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Make `ansible_collections.qemu.vm` importable and `qemu.vm.*` resolvable.
COLLECTION_ENV := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) PYTHONPATH=$(COLLECTIONS_DIR)

.PHONY: help venv deps guest collection test units system molecule sanity lint demo bench clean distclean

help:
	@echo "make demo        boot a throwaway VM and run playbooks/demo.yml against it"
	@echo "make test        deps venv guest collection, then units system molecule sanity lint"
	@echo "make units       pytest tests/unit"
	@echo "make system      pytest tests/system (boots real VMs)"
	@echo "make molecule    the qemu.vm.backup role's molecule scenario (boots a real VM)"
	@echo "make sanity      ansible-test sanity on a clean copy under build/sanity"
	@echo "make lint        ansible-lint --profile production"
	@echo "make bench       benchmarks against baselines (~15 min, not part of make test): bench/results.md"
	@echo "make venv|deps|guest|collection   the individual setup steps"
	@echo "make clean       remove build outputs (distclean: also .venv and .cache)"

# --- setup ------------------------------------------------------------------

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt requirements.txt
	test -x $(VENV_BIN)/python || $(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
		dpkg -s "$$pkg" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing missing packages:$$missing"; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "All Debian packages present."; \
	fi

guest:
	bash tests/guest/build-guest.sh

collection:
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(CURDIR) $(COLLECTION_LINK)

# --- tests ------------------------------------------------------------------

# Runs every suite even when an earlier one fails, then fails if any failed.
test: deps venv guest collection
	@failed=""; \
	for suite in units system molecule sanity lint; do \
		echo "===== make $$suite ====="; \
		$(MAKE) $$suite || failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; \
	echo "All suites passed: units system molecule sanity lint"

# pytest exits 5 when it collects no tests; that fails the target as well.
units: venv collection
	$(COLLECTION_ENV) $(VENV_BIN)/python -m pytest tests/unit

system: venv collection
	$(COLLECTION_ENV) $(VENV_BIN)/python -m pytest tests/system

molecule: venv collection
	cd roles/backup && PATH=$(VENV_BIN):$$PATH $(VENV_BIN)/molecule test

# ansible-test needs the collection under ansible_collections/<ns>/<name>/ and
# its own content root, so sanity runs on a fresh copy of the files git knows
# about (tracked plus untracked-but-not-ignored). The copy gets its own `git init`
# so ansible-test does not pick up this repository, where build/ is ignored.
# ansible-test bootstraps pip in its per-test venvs with a get-pip script it
# downloads from a host we cannot reach; put our offline stand-in in its cache.
sanity: deps venv
	rm -rf $(SANITY_ROOT)
	mkdir -p $(SANITY_ROOT)
	git ls-files -z -co --exclude-standard \
		| rsync -a --from0 --files-from=- --ignore-missing-args ./ $(SANITY_ROOT)/
	git -C $(SANITY_ROOT) init -q
	pip_version=$$($(VENV_BIN)/python -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(types.SimpleNamespace(version="$(SANITY_PYTHON)"))["pip"])'); \
	mkdir -p $(ANSIBLE_TEST_CACHE); \
	install -m 0644 $(GET_PIP) $(ANSIBLE_TEST_CACHE)/get_pip_$${pip_version//./_}.py
	cd $(SANITY_ROOT) && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH PATH=$(VENV_BIN):$$PATH \
		$(VENV_BIN)/ansible-test sanity --python $(SANITY_PYTHON) --color no

lint: venv collection
	PATH=$(VENV_BIN):$$PATH $(COLLECTION_ENV) $(VENV_BIN)/ansible-lint --profile production

# --- demo -------------------------------------------------------------------

demo: deps venv guest collection
	$(COLLECTION_ENV) $(VENV_BIN)/python tests/demo/run-demo.py

# --- benchmarks ---------------------------------------------------------------

# Not part of `make test`: timings are reported, never asserted. BENCH_RUNS rounds per
# figure (medians); BENCH_ARGS passes more options to bench/run.py (e.g. --only 1,4).
BENCH_RUNS ?= 5
BENCH_ARGS ?=

bench: venv guest collection
	$(COLLECTION_ENV) $(VENV_BIN)/python bench/run.py --runs $(BENCH_RUNS) $(BENCH_ARGS)

# --- cleanup ----------------------------------------------------------------

clean:
	rm -rf build tests/output bench/output .pytest_cache .ansible qemu-vm-*.tar.gz
	find . \( -path ./.venv -o -path ./.git -o -path ./.cache \) -prune \
		-o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache
