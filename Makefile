# Two entry points: `make demo` (the main job on the embedded world) and `make test`.
# Both create .venv, install curate with its dependencies and make sure ffmpeg is present.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
DEMO_ARGS ?=      # e.g. make demo DEMO_ARGS="--seed 1" (another world)

.PHONY: install test test-fast lint demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

# the development loop: everything but the tests marked slow (under 3 minutes on 2 cores)
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(VENV)/bin/curate demo --out $(DEMO_OUT) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
