# citygate: the two commands in README.md are `make demo` and `make test`.
# Both set up everything on a fresh Debian-like machine: system packages (as
# root, or with sudo), the Python environment in .venv, then run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SYSTEM_PACKAGES := mosquitto mosquitto-clients influxdb victoria-metrics chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo system venv lint unit

# Install the servers the tests start (never started as services here).
system:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	command -v victoria-metrics >/dev/null 2>&1 || missing="$$missing victoria-metrics"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check citygate tests bench deploy
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

test: system venv lint
	$(BIN)/pytest -q

demo: system venv
	$(BIN)/citygate demo
