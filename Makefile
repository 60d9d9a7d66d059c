# rsir-stac: `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= $(if $(RSIR_DATA),$(RSIR_DATA),../shared/data)
INDEX  ?= rsir-index

.PHONY: install demo test bench clean

$(BIN)/rsir-stac: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

install: $(BIN)/rsir-stac

demo: install
	@DATA="$(DATA)" INDEX="$(INDEX)" BIN="$(BIN)" sh deploy/demo.sh

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(INDEX) out
