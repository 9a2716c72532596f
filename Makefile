# Single entry point for developing and testing the qemu.vm collection.
# Run `make help` for the list of targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3

# ansible-core versions we support and test (README, meta/runtime.yml). `make units CORE=2.17`
# and `make sanity CORE=2.17` use that version's venv (.venv-core217, from
# tests/matrix/requirements-core217.txt); without CORE they use .venv (ansible-core 2.19).
CORES := 2.17 2.18 2.19
CORE ?=
# The controller Python of every venv (ansible-core 2.17 to 2.19 all support 3.11).
CONTROLLER_PYTHON ?= python3.11

VENV := $(CURDIR)/.venv
VENV_BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.requirements-installed

CORE_VENV := $(if $(CORE),$(CURDIR)/.venv-core$(subst .,,$(CORE)),$(VENV))
CORE_BIN := $(CORE_VENV)/bin
CORE_STAMP := $(CORE_VENV)/.requirements-installed

# Docs, execution environment, changelog and artifact tools (requirements-tools.txt).
TOOLS_VENV := $(CURDIR)/.venv-tools
TOOLS_BIN := $(TOOLS_VENV)/bin
TOOLS_STAMP := $(TOOLS_VENV)/.requirements-installed

COLLECTIONS_DIR := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS_DIR)/ansible_collections/qemu/vm
SANITY_ROOT := $(CURDIR)/build/sanity$(if $(CORE),-$(CORE))/ansible_collections/qemu/vm
DOCS_DIR := $(CURDIR)/build/docs
ARTIFACT_DIR := $(CURDIR)/build/artifact
EE_DIR := $(CURDIR)/build/ee

# Debian packages needed to build the test guest and run real VMs (openssh-server: the SSH tests
# start their own sshd instances; the system sshd is not used).
APT_PACKAGES := qemu-system-x86 qemu-utils qemu-guest-agent busybox-static genisoimage ovmf \
	e2fsprogs dbus rsync shellcheck git make python3 python3-venv ca-certificates \
	openssh-client openssh-server

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Make `ansible_collections.qemu.vm` importable and `qemu.vm.*` resolvable.
COLLECTION_ENV := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) PYTHONPATH=$(COLLECTIONS_DIR)

.PHONY: help venv venv-core tools deps guest collection test ci matrix units system molecule sanity lint ruff \
	docs-lint docs artifact ee changelog demo bench clean distclean

help:
	@echo "make demo        boot a throwaway VM and run playbooks/demo.yml against it"
	@echo "make test        deps venv guest collection, then every suite (what CI runs, timed)"
	@echo "make matrix      units and sanity on ansible-core $(CORES), each in its own venv"
	@echo "make units       pytest tests/unit (CORE=2.17|2.18|2.19: in that version's venv)"
	@echo "make system      pytest tests/system (boots real VMs)"
	@echo "make molecule    molecule scenarios: the backup role, the example role in a VM (boot real VMs)"
	@echo "make sanity      ansible-test sanity on a clean copy, compile/import on Python 3.8+ (CORE=...)"
	@echo "make lint        ansible-lint --profile production"
	@echo "make ruff        ruff (pyupgrade rules for Python 3.8, ruff.toml) on every Python file"
	@echo "make docs-lint   antsibull-docs lint-collection-docs --plugin-docs"
	@echo "make docs        HTML docs site (antsibull-docs + Sphinx) in build/docs/html, checked"
	@echo "make artifact    ansible-galaxy collection build, galaxy-importer, install, run a module on a VM"
	@echo "make ee          ansible-builder create: the execution environment context (after artifact)"
	@echo "make changelog   antsibull-changelog lint, and a dry run of the release on a copy"
	@echo "make bench       benchmarks against baselines (~15 min, not part of make test): bench/results.md"
	@echo "make venv|venv-core|tools|deps|guest|collection   the individual setup steps"
	@echo "make clean       remove build outputs (distclean: also .venv and .cache)"

# --- setup ------------------------------------------------------------------

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt requirements.txt
	test -x $(VENV_BIN)/python || $(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

# One venv per ansible-core version of the matrix: .venv-core217 from tests/matrix/requirements-core217.txt.
venv-core: $(CORE_STAMP)

$(CURDIR)/.venv-core%/.requirements-installed: tests/matrix/requirements-core%.txt
	test -x $(@D)/bin/python || $(CONTROLLER_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --disable-pip-version-check -r $<
	touch $@

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_BIN)/python || $(CONTROLLER_PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_BIN)/python -m pip install --disable-pip-version-check -r requirements-tools.txt
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

# Runs every suite even when an earlier one fails, then fails if any failed; prints how long
# each took. `artifact` comes before `ee`, which puts the built collection in its context.
SUITES := ruff matrix system molecule lint docs-lint docs changelog artifact ee

test: deps venv guest collection
	@failed=""; times=""; \
	for suite in $(SUITES); do \
		echo "===== make $$suite ====="; start=$$(date +%s); \
		$(MAKE) $$suite || failed="$$failed $$suite"; \
		times="$$times $$suite=$$(( $$(date +%s) - start ))s"; \
	done; \
	echo "Suite times:$$times"; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; \
	echo "All suites passed: $(SUITES)"

ci: test

# Units and sanity for every ansible-core version, each in its own venv. The ansible-test
# venvs (~/.ansible/test/venv) are shared between versions where their requirements match.
matrix: deps
	@failed=""; times=""; \
	for core in $(CORES); do \
		for suite in units sanity; do \
			echo "===== make $$suite CORE=$$core ====="; start=$$(date +%s); \
			$(MAKE) $$suite CORE=$$core || failed="$$failed $$suite/$$core"; \
			times="$$times $$suite/$$core=$$(( $$(date +%s) - start ))s"; \
		done; \
	done; \
	echo "Matrix times:$$times"; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

# pytest exits 5 when it collects no tests; that fails the target as well.
units: $(CORE_STAMP) collection
	$(COLLECTION_ENV) $(CORE_BIN)/python -m pytest tests/unit

# The system tests run on SYSTEM_WORKERS pytest-xdist workers (SYSTEM_WORKERS=1: in one process,
# serially). Every test boots its own VMs; a file's module-scoped VM is shared by that file's tests,
# so --dist loadfile keeps each file on one worker (xdist hands out the files with most tests first).
SYSTEM_WORKERS ?= 3
system: venv collection
	$(COLLECTION_ENV) $(VENV_BIN)/python -m pytest -n $(if $(filter 1,$(SYSTEM_WORKERS)),0,$(SYSTEM_WORKERS)) \
		--dist loadfile --durations=15 tests/system

# The backup role's scenario, then the example role's full `molecule test` in a QEMU VM booted by the
# collection's own qemu.vm.molecule_create/destroy (tests/molecule/example).
molecule: venv collection guest
	cd roles/backup && PATH=$(VENV_BIN):$$PATH $(VENV_BIN)/molecule test
	cd tests/molecule/example && PATH=$(VENV_BIN):$$PATH $(COLLECTION_ENV) $(VENV_BIN)/molecule test

# ansible-test needs the collection under ansible_collections/<ns>/<name>/ and
# its own content root, so sanity runs on a fresh copy of the files git knows
# about (tracked plus untracked-but-not-ignored). The copy gets its own `git init`
# so ansible-test does not pick up this repository, where build/ is ignored.
# tests/matrix/sanity.py runs ansible-test with compile/import on every target Python we
# claim (3.8+, pyenv interpreters) and puts our offline get-pip stand-in where it looks.
sanity: deps $(CORE_STAMP)
	rm -rf $(SANITY_ROOT)
	mkdir -p $(SANITY_ROOT)
	git ls-files -z -co --exclude-standard \
		| rsync -a --from0 --files-from=- --ignore-missing-args ./ $(SANITY_ROOT)/
	git -C $(SANITY_ROOT) init -q
	cd $(SANITY_ROOT) && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH PATH=$(CORE_BIN):$$PATH \
		$(CORE_BIN)/python $(CURDIR)/tests/matrix/sanity.py

# ansible-lint installs the collection under test into $$HOME/.ansible/collections, where an older
# copy (left by molecule or an earlier run) would shadow build/collections: give it a HOME of its own.
lint: venv collection
	rm -rf build/lint-home && mkdir -p build/lint-home
	HOME=$(CURDIR)/build/lint-home PATH=$(VENV_BIN):$$PATH $(COLLECTION_ENV) $(VENV_BIN)/ansible-lint --profile production

# pyupgrade rules (ruff.toml); pep8 and pylint run in ansible-test sanity.
ruff: venv
	$(VENV_BIN)/ruff check .

# --- docs, artifact, execution environment, changelog --------------------------

TOOLS_ENV := $(COLLECTION_ENV) PATH=$(TOOLS_BIN):$$PATH

docs-lint: tools collection
	cd $(COLLECTION_LINK) && $(TOOLS_ENV) $(TOOLS_BIN)/antsibull-docs lint-collection-docs --plugin-docs .

# antsibull-docs renders every plugin and role of the collection, and the guides of
# docs/docsite/ (extra-docs.yml), into rst; Sphinx builds the site with warnings as errors
# (docs/site/conf.py); tests/docs checks every plugin and guide has a page and no internal link
# is broken.
docs: tools collection
	rm -rf $(DOCS_DIR)
	mkdir -p $(DOCS_DIR)/rst
	chmod og-w $(DOCS_DIR)/rst
	$(TOOLS_ENV) $(TOOLS_BIN)/antsibull-docs --config-file docs/site/antsibull-docs.cfg collection \
		--use-current --squash-hierarchy --dest-dir $(DOCS_DIR)/rst qemu.vm
	$(TOOLS_ENV) $(TOOLS_BIN)/sphinx-build -b html -c docs/site -W --keep-going -q $(DOCS_DIR)/rst $(DOCS_DIR)/html
	$(TOOLS_BIN)/python -m pytest -p no:cacheprovider tests/docs
	@echo "Docs site: $(DOCS_DIR)/html/index.html"

# The Galaxy artifact: built from the repository (galaxy.yml build_ignore), checked by
# galaxy-importer (what Galaxy runs on an upload, offline), its listing checked, installed with
# ansible-galaxy into a fresh path, and a module of the installed copy run against a real VM
# (tests/artifact).
artifact: venv tools guest
	rm -rf $(ARTIFACT_DIR)
	mkdir -p $(ARTIFACT_DIR)
	env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH $(VENV_BIN)/ansible-galaxy collection build \
		--output-path $(ARTIFACT_DIR) .
	cd $(ARTIFACT_DIR) && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH PATH=$(TOOLS_BIN):$$PATH \
		GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/artifact/galaxy-importer.cfg \
		$(TOOLS_BIN)/python -m galaxy_importer.main qemu-vm-*.tar.gz > galaxy-importer.log 2>&1 \
		|| { cat $(ARTIFACT_DIR)/galaxy-importer.log; exit 1; }
	@grep -E '^(WARNING|ERROR)' $(ARTIFACT_DIR)/galaxy-importer.log || true
	# Only the fresh path is configured: a copy elsewhere (molecule and ansible-lint install the
	# collection under test into ~/.ansible/collections) would make galaxy skip the install.
	env -u PYTHONPATH ANSIBLE_COLLECTIONS_PATH=$(ARTIFACT_DIR)/collections $(VENV_BIN)/ansible-galaxy \
		collection install --offline -p $(ARTIFACT_DIR)/collections $(ARTIFACT_DIR)/qemu-vm-*.tar.gz
	env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH QEMU_VM_ARTIFACT_DIR=$(ARTIFACT_DIR) \
		$(VENV_BIN)/python -m pytest -p no:cacheprovider tests/artifact

# The execution environment's build context (no container engine needed): the definition in
# ee/ with the artifact from `make artifact`; tests/ee checks the context and that
# ansible-builder reads the installed collection's meta/execution-environment.yml.
ee: tools
	test -n "$$(ls $(ARTIFACT_DIR)/qemu-vm-*.tar.gz)" || { echo "run make artifact first"; exit 1; }
	rm -rf $(EE_DIR)
	mkdir -p $(EE_DIR)
	cp ee/execution-environment.yml ee/requirements.yml $(EE_DIR)/
	cp $(ARTIFACT_DIR)/qemu-vm-*.tar.gz $(EE_DIR)/qemu-vm.tar.gz
	$(TOOLS_BIN)/ansible-builder create -f $(EE_DIR)/execution-environment.yml \
		--context $(EE_DIR)/context --output-filename Containerfile -v 2
	QEMU_VM_ARTIFACT_DIR=$(ARTIFACT_DIR) QEMU_VM_EE_DIR=$(EE_DIR) \
		$(TOOLS_BIN)/python -m pytest -p no:cacheprovider tests/ee

# Release notes are generated when a release is cut (DEVELOPERS.md), not on branches: here
# the fragments are linted and `antsibull-changelog release` is run on a throwaway copy.
changelog: tools
	$(TOOLS_BIN)/antsibull-changelog lint
	bash tests/changelog/release-dry-run.sh $(TOOLS_BIN)

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
	rm -rf $(VENV) $(TOOLS_VENV) $(CURDIR)/.venv-core* $(CURDIR)/.venv-bench .cache
