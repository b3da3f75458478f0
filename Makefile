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
# And a third time on the newest Blender (5.2: CPython 3.13). Its zip has no torch (none small enough exists
# for Linux cp313), so its worker runs in the project's 3.11 venv: the External Python backend.
NEWEST_BPY := bpy==5.2.3
PYTHON313 ?= PYENV_VERSION=3.13.0 python3
VENV_NEWEST := .venv-blender52
STAMP_NEWEST := $(VENV_NEWEST)/.installed
CHECK_PYTHON313 := $(PYTHON313) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null || { \
	echo "Python 3.13 is needed for the bpy 5.2 tests (Blender 5.1+ embed it): 'pyenv install 3.13.0', or make PYTHON313=/path/to/python3.13" >&2; exit 1; }
NEWEST_ENV := SA3DF_WORKER_PYTHON=$(abspath $(BIN)/python) SA3DF_BUILD_PYTHON=$(abspath $(BIN)/python)

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

$(STAMP_NEWEST): constraints.txt backend/pyproject.toml
	$(CHECK_PYTHON313)
	$(PYTHON313) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/pip install -q --upgrade pip
	$(VENV_NEWEST)/bin/pip install -q "pytest>=7" "packaging>=23" "setuptools>=68" "$(NEWEST_BPY)"
	$(VENV_NEWEST)/bin/pip install -q --no-deps --no-build-isolation -e backend  # numpy-only parts; no torch
	touch $(STAMP_NEWEST)

demo: $(STAMP)
	$(BIN)/sa3df demo --out demo_output

test: $(STAMP) $(STAMP_OLDEST) $(STAMP_NEWEST)
	$(BIN)/python -m pytest -ra
	$(VENV_OLDEST)/bin/python -m pytest -ra -m blender -p no:cacheprovider
	$(NEWEST_ENV) $(VENV_NEWEST)/bin/python -m pytest -ra -m blender -p no:cacheprovider

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

addon: $(STAMP)
	$(BIN)/python build_addon.py --all

clean:
	rm -rf $(VENV) $(VENV_OLDEST) $(VENV_NEWEST) build dist wheels demo_output
