# All set-up from a fresh clone: `make demo` and `make test` create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml plugins/ganforge-relativistic/pyproject.toml plugins/ganforge-torchvision/pyproject.toml plugins/ganforge-astro/pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ganforge fit

test: $(STAMP)
	bash scripts/test.sh

bench: $(STAMP)
	$(PY) benchmarks/iteration.py

clean:
	rm -rf $(VENV) runs
