# make demo : set everything up, train the tiny masked diffusion model on Shakespeare, sample it
# make test : set everything up, run the whole test suite
# make serve: serve the demo model (trained first if missing); the playground is at / 
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dlm-installed
# torch is installed before the package so that `torch>=2.4` never pulls a multi-GB CUDA build.
# This machine has a CPU build of 2.13.0 on disk; elsewhere this spec takes torch from PyPI.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= runs/demo
DEMO_MINUTES ?= 9
# The prompt ends where a new speaker starts, so the sample shows a name and verse lines.
DEMO_PROMPT ?= **JULIET**  \nRomeo, Romeo!  \n\n**
SERVE_PORT ?= 8000

.PHONY: setup demo serve test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "dlm: reusing the torch that $(PYTHON) already has (venv with system site-packages)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "dlm: keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
	  $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev,lora,eval,serve]"
	@# the browser test drives Debian's chromium through Playwright (never `playwright install`)
	@command -v chromium >/dev/null 2>&1 || { echo "dlm: installing Debian's chromium"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; } \
	  || echo "dlm: could not install chromium: the browser test will report itself skipped"
	@touch $(STAMP)

demo: setup
	$(BIN)/dlm train --preset tiny --out $(DEMO_DIR) --max-minutes $(DEMO_MINUTES) --resume
	$(BIN)/dlm sample $(DEMO_DIR) "$$(printf '$(DEMO_PROMPT)')" --gen-length 96 --steps 96 \
	  --block-length 24 --temperature 0.8 --seed 0 --animate
	@echo "dlm: watch it denoise live: 'make serve', then open http://127.0.0.1:$(SERVE_PORT)/"

serve: setup
	@[ -f $(DEMO_DIR)/config.json ] || $(BIN)/dlm train --preset tiny --out $(DEMO_DIR) \
	  --max-minutes $(DEMO_MINUTES) --resume
	$(BIN)/dlm serve $(DEMO_DIR) --name demo --port $(SERVE_PORT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .pytest_cache
