#!/usr/bin/env bash
# The short GPU check, for a task that is lent a device machine (see bench/gpu_check.py).
#
#   bash bench/gpu_check.sh prepare     # here: wheels, BBH data, model config/tokenizer into .gpu/ (git-ignored)
#   bash bench/gpu_check.sh run         # there: device run with carry [".gpu"], timeout_s 600
#
# The device machine reaches no registry and receives at most 64 MiB, so what
# its python3 (torch, transformers, jinja2, rich, numpy) lacks travels as wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
case "${1:-}" in
prepare)
    rm -rf "$GPU" && mkdir -p "$GPU/wheels" "$GPU/data/bbh" "$GPU/model"
    .venv/bin/pip download -q --only-binary=:all: --python-version 3.12 --no-deps -d "$GPU/wheels" \
        pydantic pydantic-core annotated-types typing-inspection gguf
    cp "${EVALSUITE_DATA_DIR:-../shared/data}"/bbh/{boolean_expressions,date_understanding,hyperbaton,dyck_languages}.json \
        "$GPU/data/bbh/"
    model=$(.venv/bin/python -c 'from evalsuite.backends.models import resolve_model; print(resolve_model("smollm2-135m").loadable)')
    cp "$model"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} "$GPU/model/"
    du -sh "$GPU"
    ;;
run)
    python3 -m pip install -q --no-index --find-links "$GPU/wheels" --target "$GPU/site" \
        pydantic pydantic-core annotated-types typing-inspection gguf
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    PYTHONPATH="$GPU/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
        python3 bench/gpu_check.py --model-dir "$GPU/model" --data-dir "$GPU/data"
    ;;
*)
    echo "usage: bash bench/gpu_check.sh prepare|run" >&2
    exit 2
    ;;
esac
