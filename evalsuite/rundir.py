"""Reading and writing a run directory: run.json, samples.jsonl, results.json.

Everything goes through the records in :mod:`evalsuite.records`; the gate and
the leaderboard read runs only through :class:`RunDir`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from evalsuite.errors import UserError
from evalsuite.records import SCHEMA_VERSION, ResultsSummary, RunProvenance, SampleResult

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
LOCK_FILE = ".lock"  # held (flock) by the process writing the run; holds its pid
FSYNC_INTERVAL_S = 1.0  # samples.jsonl: the most an OS crash can lose (see RunDir.append)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._appender: IO[str] | None = None
        self._synced_at = 0.0  # time.monotonic() of the last fsync

    @classmethod
    def existing(cls, path: Path | str) -> "RunDir":
        run = cls(path)
        if not (run.path / RUN_FILE).is_file():
            # `evalsuite run -o DIR` writes DIR/<run-id>/: the usual slip is passing DIR.
            inside = sorted(str(f.parent) for f in run.path.glob(f"*/{RUN_FILE}")) if run.path.is_dir() else []
            hint = f"; it holds the run director{'y' if len(inside) == 1 else 'ies'} {', '.join(inside[:3])}" if inside else ""
            raise UserError(f"{run.path} is not an evalsuite run directory (no {RUN_FILE}){hint}")
        return run

    @contextmanager
    def claimed(self) -> Iterator[None]:
        """Hold the run for this process while it writes it: a second ``--resume``
        or ``evalsuite score`` of the same run raises ``UserError`` naming the
        holder instead of generating the same samples again in a race on one
        samples.jsonl.  An advisory ``flock``: the kernel drops it when the
        holder exits, however it dies (``kill -9`` included), so a crashed run
        is never left claimed.  On a file system without locks (some network
        and FUSE mounts) the run goes on unclaimed."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = (self.path / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise UserError(f"{self.path} is in use by another evalsuite process (pid {holder}): "
                                "wait for it to finish (or stop it) and try again") from None
            except OSError:  # ENOLCK, EOPNOTSUPP: no claim possible here
                yield
                return
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fh.close()  # releases the lock

    # -- provenance and results ------------------------------------------------

    def write_provenance(self, prov: RunProvenance) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / RUN_FILE, prov.model_dump_json(indent=2))

    def provenance(self) -> RunProvenance:
        return _parse(self.path / RUN_FILE, RunProvenance)

    def write_results(self, results: ResultsSummary) -> None:
        _atomic_write(self.path / RESULTS_FILE, results.model_dump_json(indent=2))

    def results(self) -> ResultsSummary:
        if not (self.path / RESULTS_FILE).is_file():
            raise UserError(
                f"{self.path} has no {RESULTS_FILE} yet: the run is unfinished "
                f"(continue it with `evalsuite run --resume {self.path}` or score it with `evalsuite score --run {self.path}`)"
            )
        return _parse(self.path / RESULTS_FILE, ResultsSummary)

    # -- samples -----------------------------------------------------------------

    def append(self, records: Iterable[SampleResult]) -> None:
        """Append records to samples.jsonl; what each call loses in a crash:

        - ``kill -9`` (or any death of evalsuite alone): nothing that an
          ``append`` call returned from.  Every call hands its lines to the
          kernel before returning, and the kernel keeps them however the
          process dies; at most a partial line from a call cut short is
          left, and resume drops it.
        - an OS crash or power loss: at most the records appended in the last
          ``FSYNC_INTERVAL_S`` seconds.  fsync runs at most that often (and at
          ``close``): one per record capped the driver at ~80 records/s on a
          VM disk.  Resume regenerates whatever is missing.
        """
        if self._appender is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._appender = (self.path / SAMPLES_FILE).open("a", encoding="utf-8")
        self._appender.write("".join(record.model_dump_json() + "\n" for record in records))
        self._appender.flush()
        now = time.monotonic()
        if now - self._synced_at >= FSYNC_INTERVAL_S:
            os.fsync(self._appender.fileno())
            self._synced_at = now

    def samples(self) -> list[SampleResult]:
        """Latest record per (task, sample_id), in first-seen order.

        A torn last line (the process died mid-write) is ignored, a whole one
        without its newline is kept; a bad line anywhere else is an error.
        """
        return self._latest()[0]

    def compact(self) -> list[SampleResult]:
        """Rewrite samples.jsonl with only each sample's latest record, if earlier ones were superseded
        (a generation written before its score, a resumed or rescored run); atomic (rename).
        Returns :meth:`samples`."""
        records, lines = self._latest()
        if lines == len(records):
            return records
        self.close()
        path = self.path / SAMPLES_FILE
        tmp = path.with_name(SAMPLES_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write("".join(record.model_dump_json() + "\n" for record in records))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return records

    def _latest(self) -> tuple[list[SampleResult], int]:
        """(the latest record per sample, the number of complete lines read)."""
        path = self.path / SAMPLES_FILE
        if not path.is_file():
            return [], 0
        latest: dict[tuple[str, str], SampleResult] = {}
        data = _read_bytes(path)
        # Every write ends with a newline, so bytes after the last one are torn
        # (possibly mid-character): cut them before decoding.
        lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
        for lineno, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})") from None
            try:
                record = SampleResult.model_validate_json(line)
            except ValidationError as exc:
                raise UserError(f"{path}:{lineno}: not a valid sample record ({_first_error(exc)}){_newer_note(line)}") from None
            latest[(record.task, record.sample_id)] = _same_major(record, f"{path}:{lineno}")
        tail = _whole_tail(data)
        if tail is not None:
            latest[(tail.task, tail.sample_id)] = _same_major(tail, f"{path}:{len(lines) + 1}")
        return list(latest.values()), len(lines) + (tail is not None)

    def truncate_torn_tail(self) -> None:
        """Drop a partial last line before appending to it on resume; a whole record
        that only lacks its newline (cut just before it, or a file from elsewhere) is kept."""
        path = self.path / SAMPLES_FILE
        if path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                if _whole_tail(data) is not None:
                    with path.open("ab") as fh:
                        fh.write(b"\n")
                else:
                    path.write_bytes(data[: data.rfind(b"\n") + 1])

    def close(self) -> None:
        if self._appender is not None:
            self._appender.flush()
            os.fsync(self._appender.fileno())
            self._appender.close()
            self._appender = None


def _whole_tail(data: bytes) -> SampleResult | None:
    """The record after the last newline of samples.jsonl if it is whole and valid, else None (torn)."""
    tail = data[data.rfind(b"\n") + 1 :]
    if not tail.strip():
        return None
    try:
        return SampleResult.model_validate_json(tail.decode("utf-8"))
    except (UnicodeDecodeError, ValidationError):
        return None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(map(str, err["loc"]))
    return f"{where}: {err['msg']}" if where else err["msg"]


def _parse(path: Path, model: type):
    if not path.is_file():
        raise UserError(f"{path} not found")
    raw = _read_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = str(data.get("schema_version", ""))
    if _major(version) != _major(SCHEMA_VERSION):
        raise UserError(f"{path}: schema version {version or 'missing'}, this evalsuite reads {SCHEMA_VERSION}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: invalid {model.__name__} at {_first_error(exc)}{_newer_note(data)}") from None


def _major(version: str) -> str:
    return version.split(".")[0]


def _same_major(record: SampleResult, where: str) -> SampleResult:
    """``record`` if this evalsuite reads its schema (as for run.json and results.json)."""
    if _major(record.schema_version) != _major(SCHEMA_VERSION):
        raise UserError(f"{where}: schema version {record.schema_version}, this evalsuite reads {SCHEMA_VERSION}")
    return record


def _newer_note(record: dict | str) -> str:
    """For a record that did not validate (a dict, or one JSON line): a note when a
    newer minor schema wrote it, which may add fields this evalsuite does not know."""
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError:
            return ""
    version = str(record.get("schema_version", "")) if isinstance(record, dict) else ""
    minor, ours = version.partition(".")[2], SCHEMA_VERSION.partition(".")[2]
    if _major(version) == _major(SCHEMA_VERSION) and minor.isdigit() and ours.isdigit() and int(minor) > int(ours):
        return f" (written by a newer evalsuite: schema {version}, this one reads {SCHEMA_VERSION})"
    return ""
