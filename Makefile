# Two entry points: `make demo` runs flareseg on the bundled sample CT, `make test` runs the test suite.
# Each creates the virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT := demo_output

.PHONY: demo test install clean

$(BIN)/flareseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/flareseg

install: $(BIN)/flareseg

demo: install
	$(BIN)/flareseg demo --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT)
