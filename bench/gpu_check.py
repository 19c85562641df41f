"""The GPU check: the HF backend's engines on CUDA, side by side in one run.

For a task that is lent a device machine (``bash bench/gpu_check.sh``).  Nothing
can be downloaded there and at most 64 MiB travels, so the embedded model's
weights stay here: the check builds SmolLM2-135M's architecture from its
config with seeded random weights (the code paths and shapes are the model's;
the texts are gibberish that mostly runs to the token limit, the worst case
for batching).

Printed, per dtype (float32, bfloat16):
  continuous: the default engine (rows refilled as they finish, slot KV cache);
  static:     length-sorted static batches through model.generate (-M engine=static);
  one-by-one: model.generate, one prompt per call (fp32 only: the reference);
tok/s of each, the ratios, how many greedy completions agree with the
reference (GPU kernels may pick another batch-size-dependent reduction order,
so a few near-tie divergences are possible and are counted, not hidden), and
the largest log-likelihood difference between the backend and one direct
forward pass.

    python bench/gpu_check.py --model-dir .gpu/model --data-dir .gpu/data
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from evalsuite.backends.base import BackendOptions, ChoiceRequest, GenerateRequest
from evalsuite.backends.hf import HFBackend
from evalsuite.records import GenerationConfig
from evalsuite.runner import limit_samples
from evalsuite.task import TaskContext
from tasks.bbh import STOPS, bbh

SUBTASKS = ["boolean_expressions", "date_understanding", "hyperbaton", "dyck_languages"]


def random_model(config_dir: Path, into: Path) -> Path:
    """A folder with ``config_dir``'s config and tokenizer and seeded random weights."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    model.save_pretrained(into)
    for f in config_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, into / f.name)
    return into


def requests(data_dir: Path, per_subtask: int, max_new_tokens: int) -> list[GenerateRequest]:
    task = bbh(TaskContext(data_dir=data_dir, chat=True), subtasks=SUBTASKS)
    config = GenerationConfig(max_new_tokens=max_new_tokens, stop=STOPS)
    return [GenerateRequest(task.request(s).prompt, config) for s in limit_samples(task.samples, per_subtask)]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def generate(backend: HFBackend, reqs: list[GenerateRequest]) -> tuple[float, list[str], int]:
    _sync()
    start = time.perf_counter()
    out = dict(backend.generate(reqs))
    _sync()
    seconds = time.perf_counter() - start
    return seconds, [out[i].completions[0] for i in range(len(reqs))], sum(o.completion_tokens for o in out.values())


def one_by_one(backend: HFBackend, reqs: list[GenerateRequest]) -> tuple[float, list[str], int]:
    """Static engine, batch size 1: one model.generate call per prompt."""
    saved = backend.batch_size
    backend.batch_size = 1
    try:
        return generate(backend, reqs)
    finally:
        backend.batch_size = saved


def loglikelihood_gap(backend: HFBackend) -> float:
    """max |backend log-likelihood - direct forward sum| over a few options (nats)."""
    req = ChoiceRequest("The capital of France is", [" Paris", " Lyon, a city", " 42"])
    (_, got), = list(backend.loglikelihood([req]))
    tok, model = backend.tokenizer, backend.model
    worst = 0.0
    ctx = tok(req.context, add_special_tokens=False).input_ids
    for cont, lp in zip(req.continuations, got.logprobs):
        full = tok(req.context + cont, add_special_tokens=False).input_ids
        ids = torch.tensor([full], device=model.device)
        with torch.inference_mode():
            logp = model(ids).logits.float().log_softmax(-1)[0]
        direct = sum(logp[t - 1, full[t]].item() for t in range(len(ctx), len(full)))
        worst = max(worst, abs(direct - lp))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="config.json + tokenizer files")
    parser.add_argument("--data-dir", type=Path, required=True, help="holds bbh/<subtask>.json")
    parser.add_argument("--per-subtask", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script (use small sizes)")
    args = parser.parse_args()
    if args.device == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    reqs = requests(args.data_dir, args.per_subtask, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_model(args.model_dir, Path(tmp))
        reference: list[str] | None = None
        for dtype in ("float32", "bfloat16"):
            rows = {}
            for engine in ("continuous", "static"):
                options = BackendOptions(device=args.device, dtype=dtype, extra={"engine": engine})
                backend = HFBackend(str(folder), options)
                generate(backend, reqs[:4])  # warm-up: kernels, allocator
                rows[engine] = generate(backend, reqs)
                if engine == "continuous":
                    print(f"[{dtype}] log-likelihood vs direct forward: max |diff| {loglikelihood_gap(backend):.2e} nats")
                elif dtype == "float32":
                    rows["one-by-one"] = one_by_one(backend, reqs)
                    reference = rows["one-by-one"][1]
                del backend
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            for name, (seconds, texts, tokens) in rows.items():
                same = sum(a == b for a, b in zip(texts, reference or texts))
                print(f"[{dtype}] {name:10s} {tokens / seconds:9.1f} tok/s  ({tokens} tokens, {seconds:.1f} s)  "
                      f"{same}/{len(reqs)} equal to fp32 one-by-one", flush=True)
            cont, static = rows["continuous"], rows["static"]
            print(f"[{dtype}] continuous / static: {(cont[2] / cont[0]) / (static[2] / static[0]):.2f}x", flush=True)


if __name__ == "__main__":
    main()
