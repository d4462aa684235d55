# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Everything else is a step of those.  Set-up output goes to stderr so that
# `eval "$(make -s cluster-env)"` sees only the export line.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
TESTBED := $(PY) -m tools.testbed

.PHONY: setup demo test lint sanity unit integration e2e molecule bench \
        cluster-up cluster-down cluster-status cluster-env \
        keycloak-up keycloak-down keycloak-env keycloak-status images clean

setup: $(STAMP) .collections/ansible_collections/datalab/notebooks

$(STAMP): requirements.txt tools/offline_ansible_test.py
	@test -x $(PY) || python3 -m venv $(VENV) >&2
	@$(PY) -m pip install -q --upgrade pip >&2
	@$(PY) -m pip install -q -r requirements.txt >&2
	@$(PY) -m tools.offline_ansible_test >&2
	@rm -f $(VENV)/.installed-* && touch $@

.collections/ansible_collections/datalab/notebooks:
	@mkdir -p .collections/ansible_collections/datalab
	@ln -sfn ../../.. $@

# --- test bed (tools/testbed) --------------------------------------------------
cluster-up: setup
	@$(TESTBED) cluster-up
cluster-down: setup
	@$(TESTBED) cluster-down
cluster-status: setup
	@$(TESTBED) cluster-status
cluster-env: setup
	@$(TESTBED) cluster-env
keycloak-up: setup
	@$(TESTBED) keycloak-up
keycloak-down: setup
	@$(TESTBED) keycloak-down
keycloak-status: setup
	@$(TESTBED) keycloak-status
keycloak-env: setup
	@$(TESTBED) keycloak-env
# Images for the real node, built on this machine (docs/images.md): IMAGES="debian-python ..." to choose.
IMAGES ?= debian-python debian-jre
images: setup
	@$(PY) -m tools.testbed.images build $(IMAGES)

# --- tests, cheapest first ----------------------------------------------------------
lint: setup
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production

sanity: setup
	$(PY) -m tools.run_sanity

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q -m integration tests/integration

test: setup
	$(PY) -m tools.run_tests

e2e: setup
	$(PY) -m tools.e2e_setup run $(E2E_ARGS)

bench: setup
	$(PY) benchmarks/testbed.py
	$(PY) benchmarks/realm_import.py
	$(PY) benchmarks/converge.py
	$(PY) benchmarks/platform_real.py
	$(PY) benchmarks/images.py
	$(PY) benchmarks/images.py --images spark-base
	$(PY) benchmarks/spark.py

molecule: setup
	$(BIN)/molecule test -s local

demo: setup
	$(PY) -m tools.demo

clean:
	rm -rf $(VENV) .collections
