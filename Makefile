# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Blender tests run a second time on the oldest Blender the manifest allows (4.2: legacy actions).
OLDEST_BPY := bpy==4.2.0
VENV_OLDEST := .venv-blender42
STAMP_OLDEST := $(VENV_OLDEST)/.installed
CHECK_PYTHON := $(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed (Blender 4.2-5.0 embed it)"'

.PHONY: demo test bench addon clean
$(STAMP): constraints.txt backend/pyproject.toml
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -c constraints.txt -e "backend[semantic,test]"
	touch $(STAMP)

$(STAMP_OLDEST): constraints.txt backend/pyproject.toml
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install -q --upgrade pip
	$(VENV_OLDEST)/bin/pip install -q -c constraints.txt -e "backend[semantic]" "pytest>=7" "packaging>=23" "$(OLDEST_BPY)"
	touch $(STAMP_OLDEST)

demo: $(STAMP)
	$(BIN)/sa3df demo --out demo_output

test: $(STAMP) $(STAMP_OLDEST)
	$(BIN)/python -m pytest -ra
	$(VENV_OLDEST)/bin/python -m pytest -ra -m blender -p no:cacheprovider

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

addon: $(STAMP)
	$(BIN)/python build_addon.py

clean:
	rm -rf $(VENV) $(VENV_OLDEST) build dist wheels demo_output
