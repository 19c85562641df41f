"""Per-sample data for the sample browser: an index plus on-demand chunks.

Browsers refuse fetch()/XHR of file:// URLs, but they do run <script src>
from file://. The page embeds a small index (for filtering) and the first
chunk; every further chunk is a JS file calling ``LB.chunk(k, rows)`` that
the page adds as a <script> tag only when a page of samples needs it, so
thousands of samples stay responsive and the site needs no server. The data
is JSON (never HTML); the page inserts it with textContent only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.records import SampleResult


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        # One entry per completion (e.g. extracted code): show text, not a JSON list.
        if len(value) == 1:
            return value[0]
        return "\n".join(f"--- completion {i + 1} ---\n{v}" for i, v in enumerate(value))
    return json.dumps(value, ensure_ascii=False)


def verdict(sample: SampleResult, metric: str, status: str | None = None) -> str:
    """pass / fail / a graded value; empty when the sample was not scored."""
    if (status or sample.score.status.value) != "scored":
        return ""
    value = sample.score.metrics.get(metric)
    if value is None:
        return ""
    if value == 1:
        return "pass"
    if value == 0:
        return "fail"
    return f"{value:.3g}"


def _messages(prompt: Any, label: str = "prompt") -> list[list[str]]:
    if prompt is None:
        return []
    if isinstance(prompt, str):
        return [[label, prompt]]
    return [[m.role, m.content] for m in prompt]


def _outputs(sample: SampleResult) -> tuple[list[str], list[str], list[str]]:
    """(texts, finish reasons, labels): each turn of a conversation or prompt of
    a multi-request, then every judge reply with its verdict."""
    out = sample.output
    texts, finish, labels = [], [], []
    if out is not None:
        parts = out.parts or [out]
        for i, part in enumerate(parts):
            for j, text in enumerate(part.completions):
                texts.append(text)
                finish.append(part.finish_reasons[j] if j < len(part.finish_reasons) else "")
                labels.append(f"{'turn' if sample.prompts is None else 'prompt'} {i + 1}" if out.parts
                              else f"completion {j + 1}" if len(part.completions) > 1 else "")
    for judgment in sample.score.judgments:
        verdict = "no verdict" if judgment.verdict is None else json.dumps(judgment.verdict)
        for k, reply in enumerate(judgment.replies):
            texts.append(reply)
            finish.append("")
            turn = f" reply {k + 1}" if len(judgment.replies) > 1 else ""
            last = k == len(judgment.replies) - 1  # the verdict is read from the last reply
            labels.append(f"judge · {judgment.role}{' (swapped)' if judgment.swapped else ''}{turn}"
                          + (f" → {verdict}" if last else ""))
    return texts, finish, labels


def sample_record(sample: SampleResult, metric: str) -> dict[str, Any]:
    if sample.prompts is not None:  # a multi-request: every prompt it sent
        messages = [m for i, p in enumerate(sample.prompts) for m in _messages(p, f"prompt {i + 1}")]
    else:
        messages = _messages(sample.prompt)
    score = sample.score
    status = score.status.value  # enum attribute access is slow in bulk; read it once
    outputs, finish, labels = _outputs(sample)
    return {
        "id": sample.sample_id,
        "subtask": sample.subtask or "",
        "prompt": messages,
        "outputs": outputs,
        "finish": finish,
        "labels": labels,
        "answer": _text(score.answer),
        "target": _text(sample.target),
        "verdict": verdict(sample, metric, status),
        "status": status,
        "metrics": score.metrics,
        "detail": score.detail or "",
        "error": sample.error or "",
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside an inline <script>: no '<', '>', '&' or quote can
    end the script element or open a comment, whatever the model wrote."""
    text = json.dumps(value, separators=(",", ":"))  # ensure_ascii: pure ASCII
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


@dataclass
class SampleData:
    index: list[list[Any]]  # [position, id, subtask, status, verdict] per sample
    first_chunk: list[dict[str, Any]]  # embedded in the page: page 1 needs no extra file
    n_chunks: int


def write_sample_chunks(samples: list[SampleResult], metric: str, prefix: Path, chunk_size: int) -> SampleData:
    """Build the index and first chunk; write chunks 1.. as ``<prefix>-c<k>.js``.

    Few files on purpose: file creation dominates build time, so small tasks
    (one chunk) cost the page alone.
    """
    records = [sample_record(sample, metric) for sample in samples]
    index = [[i, r["id"], r["subtask"], r["status"], r["verdict"]] for i, r in enumerate(records)]
    n_chunks = -(-len(records) // chunk_size)
    for k in range(1, n_chunks):
        rows = records[k * chunk_size : (k + 1) * chunk_size]
        # A JS file, not HTML: the JSON string literals cannot end a script.
        text = f"LB.chunk({k},{json.dumps(rows, separators=(',', ':'))});\n"
        prefix.with_name(f"{prefix.name}-c{k}.js").write_text(text, encoding="ascii")
    return SampleData(index, records[:chunk_size], n_chunks)
