# Two commands do all the set-up:  `make run` (all-in-one cluster)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(sort $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck pytest bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[dev]' $(foreach dir,$(PLUGIN_DIRS),-e $(dir))
	touch $@

run: install
	$(BIN)/kubecore run $(ARGS)

lint: install
	$(BIN)/ruff check $(wildcard kubecore plugins tests examples bench)

typecheck: install
	$(BIN)/mypy kubecore $(wildcard bench) $(foreach dir,$(PLUGIN_DIRS),$(wildcard $(dir)/kubecore_*))

# pytest exits 5 when it collected nothing: a test run that tests nothing is a failure.
pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench $(ARGS)

# The configuration reference is generated from what the plugins declare.
docs: install
	$(BIN)/kubecore config --reference > docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
