# citygate: the two commands in README.md are `make demo` and `make test`.
# Both set up everything on a fresh Debian-like machine: system packages (as
# root, or with sudo), the Python environment in .venv, then run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SYSTEM_PACKAGES := mosquitto mosquitto-clients influxdb victoria-metrics chromium chromium-driver postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo system venv lint unit requirements

# Install the servers the tests start (never started as services here).
system:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v victoria-metrics >/dev/null 2>&1 || missing="$$missing victoria-metrics"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package at the version and with the hashes in requirements/dev.txt (pip refuses any
# other file), then citygate itself, editable, without touching them: no dependency, no build
# requirement comes from anywhere else (hatchling is in the file too). `make requirements`
# regenerates the files after a change to pyproject.toml's dependencies.
$(VENV)/.installed: pyproject.toml requirements/dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check citygate tests bench deploy
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -m "not servers" -q

test: system venv lint
	$(BIN)/pytest -q

demo: system venv
	$(BIN)/citygate demo

# Pin and hash every dependency again (latest versions within pyproject.toml's ranges), with
# pip-tools in a throwaway venv (not .venv). Hashes cover every file PyPI has for each
# version: the aarch64 wheels a Raspberry Pi installs too (README.md, "Deployment").
PIP_COMPILE_FLAGS := --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	--no-emit-trusted-host --upgrade
requirements:
	rm -rf /tmp/citygate-pip-tools && $(PYTHON) -m venv /tmp/citygate-pip-tools
	/tmp/citygate-pip-tools/bin/pip install -q pip-tools
	for extra in gateway cloud; do \
	  /tmp/citygate-pip-tools/bin/pip-compile -q $(PIP_COMPILE_FLAGS) --extra $$extra \
	    -o requirements/$$extra.txt pyproject.toml || exit 1; \
	done
	/tmp/citygate-pip-tools/bin/pip-compile -q $(PIP_COMPILE_FLAGS) --extra dev \
	  --unsafe-package citygate --build-deps-for editable -o requirements/dev.txt pyproject.toml
	rm -rf /tmp/citygate-pip-tools
