"""Per-sample data for the sample browser, written as on-demand JS chunks.

Browsers refuse fetch()/XHR of file:// URLs, but they do run <script src>
from file://. So each chunk is a small JS file calling ``LB.chunk(k, rows)``
and the browser page adds a <script> tag for a chunk only when a page needs
it: thousands of samples stay responsive and the site needs no server.
The data is JSON (never HTML); the page inserts it with textContent only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalsuite.records import SampleResult


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def verdict(sample: SampleResult, metric: str) -> str:
    """pass / fail / a graded value; empty when the sample was not scored."""
    if sample.score.status.value != "scored":
        return ""
    value = sample.score.metrics.get(metric)
    if value is None:
        return ""
    if value == 1:
        return "pass"
    if value == 0:
        return "fail"
    return f"{value:.3g}"


def sample_record(sample: SampleResult, metric: str) -> dict[str, Any]:
    prompt = sample.prompt
    if prompt is None:
        messages: list[list[str]] = []
    elif isinstance(prompt, str):
        messages = [["prompt", prompt]]
    else:
        messages = [[m.role, m.content] for m in prompt]
    out = sample.output
    return {
        "id": sample.sample_id,
        "subtask": sample.subtask or "",
        "prompt": messages,
        "outputs": out.completions if out else [],
        "finish": out.finish_reasons if out else [],
        "answer": _text(sample.score.answer),
        "target": _text(sample.target),
        "verdict": verdict(sample, metric),
        "status": sample.score.status.value,
        "metrics": sample.score.metrics,
        "detail": sample.score.detail or "",
        "error": sample.error or "",
    }


def _js_call(fn: str, *args: Any) -> str:
    # ensure_ascii keeps the files pure ASCII, so the page's charset cannot
    # garble them; the data is inside a JS string literal, never parsed as HTML.
    return f"{fn}({', '.join(json.dumps(a, separators=(',', ':')) for a in args)});\n"


def write_sample_chunks(samples: list[SampleResult], metric: str, folder: Path, chunk_size: int) -> int:
    """Write index.js (one small row per sample, for filtering) and c<k>.js chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    chunk: list[dict[str, Any]] = []
    k = 0
    for i, sample in enumerate(samples):
        record = sample_record(sample, metric)
        index.append([i, record["id"], record["subtask"], record["status"], record["verdict"]])
        chunk.append(record)
        if len(chunk) == chunk_size:
            (folder / f"c{k}.js").write_text(_js_call("LB.chunk", k, chunk), encoding="ascii")
            chunk, k = [], k + 1
    if chunk:
        (folder / f"c{k}.js").write_text(_js_call("LB.chunk", k, chunk), encoding="ascii")
    (folder / "index.js").write_text(_js_call("LB.index", chunk_size, index), encoding="ascii")
    return len(samples)
