"""Jinja2 prompt templates that live next to their task, hashed for provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jinja2


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Templates:
    """The ``*.j2`` files of one task folder.

    ``hashes`` covers every template in the folder, so changing a prompt
    changes the run's provenance even when the task code is untouched.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folder),
            undefined=jinja2.StrictUndefined,  # a typo in a template must fail loudly
            keep_trailing_newline=False,
            autoescape=False,
        )

    def render(self, name: str, **variables: Any) -> str:
        return self.env.get_template(name).render(**variables)

    @property
    def hashes(self) -> dict[str, str]:
        return {
            p.name: sha256_text(p.read_text(encoding="utf-8"))
            for p in sorted(self.folder.glob("*.j2"))
        }


def task_templates(module_file: str) -> Templates:
    """Templates of the task whose ``__init__.py`` is ``module_file``."""
    return Templates(Path(module_file).parent / "templates")
