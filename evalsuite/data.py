"""Benchmark data: a local mirror of the original files, or the HF hub.

A task names its benchmark folder and hub id; :class:`DataSource` decides
where rows come from, validates them (a malformed row is reported with file
and line), and hashes exactly the bytes it read into the run's provenance.

Only rows come from the hub, never prompts: a task whose prompt material is
part of the benchmark ships it as package data (BBH's cot-prompts), so both
sources build the same prompts.  A task whose hub copies cannot rebuild it
(preprocessed, or missing fields) calls :meth:`DataSource.require_mirror`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalsuite.errors import UserError
from evalsuite.records import LONE_SURROGATE, DatasetInfo, jsonl_lines

DATA_DIR_ENV = "EVALSUITE_DATA_DIR"
# Which built-in tasks need the mirror (README, "Benchmark data" says why).
MIRROR_ONLY = ("Built-in tasks that need the mirror: agieval, agieval_en, agieval_zh, agieval_orca, humaneval_plus, "
               "mtbench, mtbench_human_agreement, tinystories, tinystories_human_agreement; "
               "bbh and humaneval can read the Hugging Face Hub instead.")


class DataSource:
    """Rows of one benchmark, from ``<data-dir>/<folder>/`` or from the hub."""

    def __init__(self, folder: str, data_dir: Path | None, hub_id: str | None) -> None:
        self.folder = folder
        self.hub_id = hub_id
        env_dir = os.environ.get(DATA_DIR_ENV)
        base = data_dir or (Path(env_dir) if env_dir else None)
        self.root = Path(base) / folder if base else None
        if self.root is not None and not self.root.is_dir():
            raise self._missing(f"{self.root} does not exist")
        self._hash = hashlib.sha256()
        self._n_rows = 0

    @property
    def local(self) -> bool:
        return self.root is not None

    def _missing(self, why: str) -> UserError:
        hub = f"connect to the Hugging Face Hub (dataset {self.hub_id}) or " if self.hub_id else ""
        return UserError(
            f"{self.folder} data not found ({why}): {hub}pass --data-dir DIR / set "
            f"{DATA_DIR_ENV}=DIR, where DIR/{self.folder}/ holds the benchmark's original files"
        )

    def require_mirror(self, task: str, why: str, holds: str) -> None:
        """Raise a UserError unless a local mirror is configured.

        For tasks that cannot be rebuilt from their hub copies; ``why`` says what
        the hub lacks, ``holds`` which files DIR/<folder>/ must hold.
        """
        if not self.local:
            raise UserError(
                f"{task} reads only the local mirror of its original files ({why}): pass --data-dir DIR or set "
                f"{DATA_DIR_ENV}=DIR, where DIR/{self.folder}/ holds {holds}. {MIRROR_ONLY}"
            )

    def path(self, name: str) -> Path:
        if self.root is None:
            self.require_mirror(self.folder, "it has no hub copy evalsuite reads", "the benchmark's original files")
        path = self.root / name
        if not path.is_file():
            raise self._missing(f"{path} is missing")
        return path

    def read_bytes(self, name: str) -> bytes:
        data = self.path(name).read_bytes()
        self._hash.update(name.encode() + b"\0" + data)
        return data

    def read_text(self, name: str) -> str:
        data = self.read_bytes(name)
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        return data.decode("utf-8")

    def json_rows(self, name: str, field: str | None = None, required: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Rows of a JSON file (optionally under ``field``) or a JSON Lines file."""
        text = self.read_text(name)
        where = f"{self.root}/{name}"
        if name.endswith((".jsonl", ".jsonl.gz")):
            rows = []
            for lineno, line in enumerate(jsonl_lines(text), 1):
                if line.strip():
                    rows.append(_check_row(_loads(line, f"{where}:{lineno}"), required, f"{where}:{lineno}"))
            self._n_rows += len(rows)
            return rows
        doc = _loads(text, where)
        items = doc.get(field) if field and isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise UserError(f"{where}: expected a list{f' under {field!r}' if field else ''}")
        rows = [_check_row(r, required, f"{where}: {field or 'row'}[{i}] (line 1)") for i, r in enumerate(items)]
        self._n_rows += len(rows)
        return rows

    def hub_rows(self, config: str | None, split: str, required: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Rows of ``hub_id/config`` through ``datasets.load_dataset`` (used when no mirror is given).

        ``hub_id`` may also be a local folder in hub layout (one config per
        subfolder, declared in its README.md), which ``datasets`` reads the same way.
        Raises UserError when the load fails (offline, gated, renamed).
        """
        try:
            import datasets

            ds = datasets.load_dataset(self.hub_id, config, split=split)
        except Exception as exc:  # offline, gated, renamed: all end the same way
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise self._missing(f"hub load of {self.hub_id}/{config} failed: {type(exc).__name__}"
                                + (f": {first}" if first else "")) from exc
        self._hash.update(f"{self.hub_id}/{config}/{split}@{ds._fingerprint}".encode())
        rows = [_check_row(dict(r), required, f"{self.hub_id}/{config}[{i}]") for i, r in enumerate(ds)]
        self._n_rows += len(rows)
        return rows

    def info(self) -> DatasetInfo:
        source = str(self.root) if self.root else f"hf://{self.hub_id}"
        return DatasetInfo(source=source, content_hash=self._hash.hexdigest(), n_rows=self._n_rows)


def jsonl_objects(path: Path, required: Iterable[str] = ()) -> tuple[list[tuple[str, dict[str, Any]]], bytes]:
    """A user's JSON Lines file: ``(file:line, object)`` per non-blank line, and
    the raw bytes (for the provenance hash).  Raises ``UserError`` naming the
    line of a malformed row or a missing field."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason})") from None
    rows = []
    for lineno, line in enumerate(jsonl_lines(text), 1):
        if line.strip():
            where = f"{path}:{lineno}"
            rows.append((where, _check_row(_loads(line, where), required, where)))
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows, raw


def _loads(text: str, where: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        line = where if where.rsplit(":", 1)[-1].isdigit() else f"{where}:{exc.lineno}"
        raise UserError(f"{line}: malformed JSON ({exc.msg})") from None
    # json.loads turns an unpaired "\ud800" escape into a lone surrogate, which no
    # UTF-8 file (samples.jsonl) can hold: refuse it here, naming the line.
    if SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise UserError(f"{where}: malformed JSON (a \\u escape of an unpaired UTF-16 surrogate is not text)")
    return value


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _check_row(row: Any, required: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise UserError(f"{where}: malformed row (expected an object, got {type(row).__name__})")
    missing = [k for k in required if k not in row]
    if missing:
        raise UserError(f"{where}: malformed row (missing {', '.join(missing)})")
    return row
