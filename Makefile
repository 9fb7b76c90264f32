# The two commands a new user needs are ./start_server.sh and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
# The suite needs a PostgreSQL it may create throwaway databases in.
TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export TEST_DATABASE_URL

.PHONY: test lint install-dev browser bench faults e2e clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

install-dev: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Debian's Chromium and ChromeDriver for the browser tests (installed when missing and root is at hand).
browser:
	bash scripts/install_browser.sh

test: $(STAMP) lint browser
	$(PYTHON) -m pytest

# Not part of CI: they take minutes and print figures rather than pass or fail.
bench: $(STAMP)
	$(PYTHON) bench/run.py

faults: $(STAMP)
	$(PYTHON) -m tests.fault_run

e2e:
	bash scripts/e2e.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
