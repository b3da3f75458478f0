# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench addon clean
$(STAMP): constraints.txt backend/pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed (Blender 4.2-5.0 embed it)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -c constraints.txt -e "backend[semantic,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sa3df demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -ra

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

addon: $(STAMP)
	$(BIN)/python build_addon.py

clean:
	rm -rf $(VENV) build dist wheels demo_output
