# vlmlab: `make pretrain`, `make sweep AXIS=connector`, `make tune AXIS=connector`, `make prefetch AXIS=connector`, `make tables`, `make test`. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build on a machine without a GPU (this pin resolves to it there); torch goes in first so that no
# later requirement pulls the CUDA wheels. On a GPU cluster: make install TORCH="torch==2.13.0".
TORCH ?= torch==2.13.0
AXIS ?= connector
# Hydra overrides for every run, e.g. ARGS="hydra/launcher=slurm trainer=ddp" (README: On a SLURM cluster).
ARGS ?=
# Processes for `make test` (pytest-xdist; a test module stays in one, so its fixtures are built once), each on one
# thread (README, "Measured on this machine", for the time on 2 cores). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto
# Trials per arm for `make tune`; empty: the ablation file's `tune.trials`, else 6.
TRIALS ?=

.PHONY: install sweep pretrain prefetch tune tables migrate sync status test test-slow test-gpu bench bench-gpu bench-latency clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	# editable: the hydra_plugins/ namespace (the sweeper) and conf/ resolve from the checkout
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

sweep: install
	$(BIN)/vlmlab sweep $(AXIS) $(ARGS)

pretrain: install
	# the zoo's pretrained tiny backbones (conf/zoo/), built once into paths.zoo_dir; a sweep builds those it needs
	$(BIN)/vlmlab pretrain $(ARGS)

prefetch: install
	# what the sweep's runs read from the hub, into the Hugging Face cache, for nodes with HF_HUB_OFFLINE=1
	$(BIN)/vlmlab prefetch $(AXIS) $(ARGS)

tune: install
	$(BIN)/vlmlab tune $(AXIS) $(if $(TRIALS),--trials $(TRIALS)) $(ARGS)

tables: install
	$(BIN)/vlmlab tables $(ARGS)

migrate: install
	# records and plans of an older vlmlab, upgraded in place (each under the run_id a fresh sweep gives it)
	$(BIN)/vlmlab migrate $(ARGS)

sync: install
	# upload the runs wandb kept offline (needs `wandb login` first)
	$(BIN)/wandb sync outputs/wandb/wandb/offline-run-*

status: install
	$(BIN)/vlmlab status $(AXIS) $(ARGS)

test: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-slow: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -m slow

test-gpu: install
	# the tests marked `cuda`: a tiny sweep end to end on the GPU, the GPU-only code paths
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -m cuda

bench: install
	$(BIN)/python -m vlmlab.bench $(ARGS)

bench-gpu: install
	# Lightning against a bare loop on one GPU: the tiny default, then SigLIP-SO400M + 1.1B-Llama shapes
	$(BIN)/python -m vlmlab.bench --steps 50 --repeats 2 trainer=gpu $(ARGS)
	$(BIN)/python -m vlmlab.bench --steps 20 --repeats 2 trainer=gpu +shapes=siglip400m_llama1b $(ARGS)

bench-latency: install
	# every arm of ablations/$(AXIS).yaml serving one request (batch 1, greedy): visual tokens, TTFT ms, decode tok/s
	$(BIN)/python -m vlmlab.bench.latency $(AXIS) $(ARGS)

clean-outputs:
	rm -rf outputs
