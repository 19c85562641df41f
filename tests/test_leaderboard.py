"""The leaderboard site, built from real `evalsuite run` directories.

The first half checks the generated files; the tests marked ``browser`` open
the site from file:// in headless Chromium (Debian's /usr/bin/chromium driven
by Playwright; install both with leaderboards/setup_browser.sh) and click
through it. They are skipped only when EVALSUITE_SKIP_BROWSER=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from evalsuite.rundir import RunDir
from leaderboards.samples import script_json
from tests.conftest import evalsuite, finish_runs, start_evalsuite

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> So the answer is (A).'
HOSTILE_MODEL = "evil<b>model</b>"
SERIES = {"org/tiny@step-1000": "So the answer is (C).", "org/tiny@step-2000": "So the answer is (B).",
          "org/tiny@step-3000": "So the answer is (A)."}
SHOTS = Path(os.environ.get("EVALSUITE_SCREENSHOTS", "/tmp/lb-shots"))


def run_parallel(data_dir: Path, out: Path, specs: dict[str, str]) -> dict[str, Path]:
    """`evalsuite run` one mock model per spec (model -> reply), concurrently."""
    procs = {}
    for i, (model, reply) in enumerate(specs.items()):
        args = ["run", "--model", f"mock:{model}", "--tasks", "bbh", "--limit", "3", "--data-dir", str(data_dir),
                "-M", f"reply={reply}", "-o", str(out / str(i))]
        procs[model] = (out / str(i), start_evalsuite(*args))
    return finish_runs(procs)


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    return run_parallel(data_dir, tmp_path_factory.mktemp("runs"), {**SERIES, HOSTILE_MODEL: HOSTILE})


def build(run_dirs, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = evalsuite("leaderboard", "build", *map(str, run_dirs), "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build(runs.values(), out)
    return out


# -- generated files ----------------------------------------------------------------


def test_build_writes_every_page(site, runs):
    assert (site / "index.html").is_file()
    assert len(list((site / "models").glob("*.html"))) == 4
    assert len(list((site / "tasks").glob("*.html"))) == 1
    assert len(list((site / "samples").rglob("*.html"))) == 4
    index = (site / "index.html").read_text()
    for model in SERIES:
        assert model in index
    assert "unweighted mean" in index  # the average is defined on the page


def test_csv_has_the_unscaled_headline_of_every_cell(site, runs):
    import csv

    rows = list(csv.DictReader((site / "leaderboard.csv").open()))
    assert len(rows) == 4
    for model, run in runs.items():
        (row,) = [r for r in rows if r["model"] == model]
        headline = RunDir.existing(run).results().tasks["bbh"]
        assert row["metric"] == headline.headline
        assert float(row["value"]) == headline.metrics[headline.headline].value


def test_downloads_are_the_raw_run_files(site, runs):
    for run in runs.values():
        run_id = RunDir.existing(run).provenance().run_id
        (folder,) = [p for p in (site / "runs").iterdir() if p.name.startswith(run_id)]
        for name in ("results.json", "samples.jsonl", "run.json"):
            assert (folder / name).read_bytes() == (run / name).read_bytes()


def test_model_written_text_is_escaped_in_html(site):
    index = (site / "index.html").read_text()
    assert "evil&lt;b&gt;model&lt;/b&gt;" in index
    assert "<b>model</b>" not in index
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<script>window.__pwned" not in text and "<img src=x" not in text, page
    # The hostile reply is in the recorded command line: escaped, not dropped.
    models = "".join(p.read_text() for p in (site / "models").glob("*.html"))
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in models


def test_sample_pages_embed_every_sample_as_script_safe_json(site, runs):
    hostile = RunDir.existing(runs[HOSTILE_MODEL]).samples()
    (page,) = [p for p in (site / "samples").rglob("*.html") if "evil&lt;b&gt;" in p.read_text()]
    text = page.read_text()
    for sample in hostile:
        assert json.dumps(sample.sample_id) in text
    # Inside the inline <script>, '<' and '>' are \u003c / \u003e: nothing can close it.
    assert script_json(HOSTILE) in text and "\\u003c/script\\u003e" in script_json(HOSTILE)


def test_history_chart_orders_checkpoints_by_step(site):
    svgs = list((site / "history").glob("*.svg"))
    assert len(svgs) == 1
    svg = svgs[0].read_text()
    assert svg.index("step-1000") < svg.index("step-2000") < svg.index("step-3000")
    assert svg.count("<circle") == 3


def test_config_override_changes_labels_and_columns(runs, tmp_path):
    cfg = tmp_path / "lb.toml"
    cfg.write_text('[site]\ncolumns = ["model", "date"]\n[labels]\ndate = "Evaluated"\n[tasks.bbh]\nlabel = "Big-Bench Hard"\n')
    out = tmp_path / "site"
    build(list(runs.values())[:1], out, "--config", str(cfg))
    index = (out / "index.html").read_text()
    assert "Big-Bench Hard" in index and "Evaluated" in index
    assert 'data-col="average"' not in index


def test_rebuild_replaces_an_old_site_but_never_another_folder(runs, tmp_path):
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    out = tmp_path / "site"
    build_site(list(runs.values())[:1], out, load_config())
    (out / "stale.html").write_text("old")
    build_site(list(runs.values())[:1], out, load_config())  # rebuilding over a site is fine
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    (other / "index.html").write_text("someone else's site")
    proc = evalsuite("leaderboard", "build", str(list(runs.values())[0]), "--out", str(other))
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["/nonexistent-run"], "not an evalsuite run directory"),
        (["RUN", "--config", "/nonexistent.toml"], "config file /nonexistent.toml not found"),
    ],
)
def test_bad_input_is_one_line(runs, tmp_path, args, needle):
    args = [str(next(iter(runs.values()))) if a == "RUN" else a for a in args]
    proc = evalsuite("leaderboard", "build", *args, "--out", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        line for line in proc.stderr.splitlines() if needle in line
    ]


# -- in the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("EVALSUITE_SKIP_BROWSER") == "1":
        pytest.skip("EVALSUITE_SKIP_BROWSER=1")
    fix = "run leaderboards/setup_browser.sh (or set EVALSUITE_SKIP_BROWSER=1)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed: {fix}", pytrace=False)
    if not Path("/usr/bin/chromium").exists():
        pytest.fail(f"/usr/bin/chromium is missing: {fix}", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    context.close()
    assert errors == [], errors  # no JS errors on any page


@pytest.fixture(scope="module")
def small_chunk_site(runs, tmp_path_factory) -> Path:
    """Pages of 5 samples, chunks of 10: paging must load chunks on demand."""
    cfg = tmp_path_factory.mktemp("cfg") / "lb.toml"
    cfg.write_text("[site]\npage_size = 5\nchunk_size = 10\n")
    out = tmp_path_factory.mktemp("site2") / "site"
    build(runs.values(), out, "--config", str(cfg))
    return out


def models_in_order(page) -> list[str]:
    return page.eval_on_selector_all("#board tbody tr:not([hidden]) td.model a", "els => els.map(e => e.textContent)")


@pytest.mark.browser
def test_index_sorts_by_any_column(page, site):
    page.goto((site / "index.html").as_uri())
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "index.png"), full_page=True)
    scores = page.eval_on_selector_all("#board tbody tr td.score", "els => els.map(e => parseFloat(e.dataset.value))")
    assert scores == sorted(scores, reverse=True)  # default: by average, best first
    ranks = page.eval_on_selector_all("#board tbody tr td.rank", "els => els.map(e => parseInt(e.textContent))")
    assert ranks[0] == 1 and ranks == sorted(ranks)
    assert len(set(ranks)) < len(ranks)  # overlapping intervals share a rank
    page.click("#board th[data-col=model]")
    names = models_in_order(page)
    assert names == sorted(names, key=str.lower)
    page.click("#board th[data-col=model]")
    assert models_in_order(page) == sorted(names, key=str.lower, reverse=True)
    page.click("#board th[data-col='task:bbh']")
    scores = page.eval_on_selector_all("#board tbody tr td.score", "els => els.map(e => parseFloat(e.dataset.value))")
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert page.get_attribute("#board th[data-col='task:bbh']", "aria-sort") == "descending"


@pytest.mark.browser
def test_index_filters_by_model_and_task(page, site):
    page.goto((site / "index.html").as_uri())
    page.fill("#model-filter", "step-2")
    assert models_in_order(page) == ["org/tiny@step-2000"]
    assert page.text_content("#row-count") == "1 model"
    page.fill("#model-filter", "")
    assert len(models_in_order(page)) == 4
    avg = page.text_content("#board tbody tr:first-child td.avg .v")
    avg_ci = page.text_content("#board tbody tr:first-child td.avg .ci")
    assert avg != "—" and avg_ci.startswith("[")
    page.uncheck("#task-filter input[value=bbh]")  # no task shown: no average
    assert page.is_hidden("#board th[data-col='task:bbh']")
    assert page.text_content("#board tbody tr:first-child td.avg .v") == "—"
    page.click("#task-filter button.group:text('All')")
    assert page.is_visible("#board th[data-col='task:bbh']")
    assert page.text_content("#board tbody tr:first-child td.avg .v") == avg
    assert page.text_content("#board tbody tr:first-child td.avg .ci") == avg_ci  # table.js agrees with the build


@pytest.mark.browser
def test_drill_down_to_task_and_model(page, site):
    page.goto((site / "index.html").as_uri())
    page.click("#board th[data-col='task:bbh'] a")
    assert page.text_content("h1") == "BBH"
    assert page.locator("#breakdown th[data-col^='sub:']").count() == 27  # every BBH subtask
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "task.png"), full_page=True)
    page.click("#breakdown td.model a:text('org/tiny@step-3000')")
    assert page.text_content("#model-name") == "org/tiny@step-3000"
    facts = page.text_content("#model-facts")
    assert "org/tiny@step-3000" in facts and "mock" in facts
    body = page.text_content("main")
    for needle in ("evalsuite version", "0.1.0", "variant", "cot", "shots", "max_new_tokens", "results.json"):
        assert needle in body
    assert page.locator("section.chart svg circle").count() == 3  # its series' history
    page.screenshot(path=str(SHOTS / "model.png"), full_page=True)
    page.click("a.samples-link")
    page.wait_for_selector("#browser[data-ready='1']")
    assert page.locator("article.sample").count() == 20


@pytest.mark.browser
def test_sample_browser_pages_and_loads_chunks_on_demand(page, small_chunk_site):
    (html,) = [p for p in (small_chunk_site / "samples").rglob("*.html")
               if "step-1000" in p.read_text() and "samples:" in p.read_text()]
    page.goto(html.as_uri())
    page.wait_for_selector("#browser[data-ready='1']")
    assert page.locator("article.sample").count() == 5
    assert "Page 1 of 17" in page.text_content("#page-info")  # 81 samples / 5
    first = page.get_attribute("article.sample >> nth=0", "data-sample-id")
    page.click("#next")
    page.wait_for_selector("#browser[data-page='2'][data-ready='1']")
    assert page.get_attribute("article.sample >> nth=0", "data-sample-id") != first
    page.fill("#page-input", "17")
    page.dispatch_event("#page-input", "change")
    page.wait_for_selector("#browser[data-page='17'][data-ready='1']")
    assert page.locator("article.sample").count() == 1  # 81 = 16 × 5 + 1
    assert page.is_disabled("#next")
    # Chunk 0 (pages 1-2) is embedded; of chunks 1-8 only 8 (page 17) was loaded.
    loaded = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src.split('/').pop())")
    chunk_files = [s for s in loaded if "-c" in s]
    assert len(chunk_files) == 1 and chunk_files[0].endswith("-c8.js")
    assert len(list((small_chunk_site / "data").rglob("*-c*.js"))) == 4 * 8  # 4 runs × chunks 1..8
    page.select_option("#f-verdict", "pass")
    page.wait_for_selector("#browser[data-page='1'][data-ready='1']")
    verdicts = page.eval_on_selector_all("article.sample .verdict", "els => els.map(e => e.textContent)")
    assert verdicts and set(verdicts) == {"pass"}


@pytest.mark.browser
def test_hostile_output_renders_as_text_and_never_runs(page, site):
    (html,) = [p for p in (site / "samples").rglob("*.html") if "evil&lt;b&gt;" in p.read_text()]
    page.goto(html.as_uri())
    page.wait_for_selector("#browser[data-ready='1']")
    assert page.text_content("pre.output >> nth=0") == HOSTILE
    assert page.locator("#browser img").count() == 0 and page.locator("#browser script").count() == 0
    assert page.text_content("#model-name") == HOSTILE_MODEL
    page.wait_for_timeout(300)  # give an injected onerror handler the chance to fire
    assert page.evaluate("window.__pwned") is None
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "samples.png"))
    page.goto((site / "index.html").as_uri())
    assert page.locator("#board td.model b").count() == 0
    assert page.evaluate("window.__pwned") is None


@pytest.mark.browser
def test_history_page_shows_the_series_chart(page, site):
    page.goto((site / "history.html").as_uri())
    assert page.locator("section.chart svg").count() == 1
    assert page.locator("section.chart svg circle").count() == 3
    page.screenshot(path=str(SHOTS / "history.png"), full_page=True)


# -- generic records: revisions, lower-is-better tasks, missing stderr --------------------


def write_synthetic_run(root: Path, run_id: str, revision: str, value: float, started: str,
                        variant: str = "zeroshot") -> Path:
    from evalsuite.records import (DatasetInfo, MetricValue, ModelInfo, ModelOutput, ResultsSummary,
                                   RunProvenance, SampleResult, Score, TaskProvenance, TaskResult)

    model = ModelInfo(id="org/base", backend="hf", revision=revision, dtype="bfloat16", parameters=1_700_000_000)
    tasks = {name: TaskProvenance(name=name, version="1", params={"variant": variant},
                                  dataset=DatasetInfo(source="x", content_hash="0", n_rows=2), template_hashes={})
             for name in ("accuracy_task", "perplexity_task")}
    rundir = RunDir(root / run_id)
    rundir.write_provenance(RunProvenance(run_id=run_id, evalsuite_version="9.9", model=model, tasks=tasks,
                                          seed=0, batch_size=1, started_at=started))
    rundir.append([SampleResult(task="accuracy_task", sample_id=str(i), prompt="Q?", target="A",
                                output=ModelOutput(completions=["A"]), score=Score(metrics={"acc": float(i)}))
                   for i in range(2)])
    rundir.close()
    rundir.write_results(ResultsSummary(run_id=run_id, model=model.id, tasks={
        "accuracy_task": TaskResult(n_samples=2, metrics={"acc": MetricValue(value=value, stderr=0.01)}, headline="acc"),
        "perplexity_task": TaskResult(n_samples=2, metrics={"ppl": MetricValue(value=10 - value)}, headline="ppl"),
    }))
    return rundir.path


def test_revisions_form_a_series_and_lower_is_better_stays_out_of_the_average(tmp_path):
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    runs = [write_synthetic_run(tmp_path / "runs", f"r{i}", rev, v, f"2026-01-0{i + 1}T00:00:00+00:00")
            for i, (rev, v) in enumerate([("abc123", 0.5), ("def456", 0.6), ("0a1b2c", 0.7)])]
    cfg = tmp_path / "lb.toml"
    cfg.write_text('[tasks.perplexity_task]\nlabel = "PPL"\nhigher_is_better = false\nscale = 1\n')
    report = build_site(runs, tmp_path / "site", load_config(cfg))
    assert (report.models, report.tasks, report.samples) == (3, 2, 6)
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'class="deviates"' not in index  # one setup throughout
    assert "org/base@abc123" in index and "PPL</a> ↓" in index
    assert 'data-task="perplexity_task" data-value="9.5" data-se="" data-lo="" data-hi="" data-n="" data-scale="1.0" data-avg="0"' in index
    # The average is the accuracy alone (50.0), the ↓ task is excluded.
    assert '<span class="v">50.0</span>' in index
    svgs = [p.read_text() for p in (tmp_path / "site" / "history").glob("*.svg")]
    assert len(svgs) == 2  # points and the lower-is-better raw score do not share an axis
    (text,) = [t for t in svgs if "accuracy_task" in t]
    (ppl,) = [t for t in svgs if "PPL" in t]
    assert "lower is better" in ppl and "lower is better" not in text
    # No step numbers in these revisions: ordered by evaluation date.
    assert text.index(">abc123<") < text.index(">def456<") < text.index(">0a1b2c<")
    assert "checkpoint (by evaluation date)" in text


def test_scores_from_a_different_task_setup_are_flagged(tmp_path):
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    runs = [write_synthetic_run(tmp_path / "runs", f"r{i}", rev, 0.5, f"2026-01-0{i + 1}T00:00:00+00:00", variant)
            for i, (rev, variant) in enumerate([("a", "zeroshot"), ("b", "zeroshot"), ("c", "fewshot")])]
    build_site(runs, tmp_path / "site", load_config())
    index = (tmp_path / "site" / "index.html").read_text()
    flagged = index.split('class="deviates" title="')[1:]
    assert len(flagged) == 2  # both tasks of run c, nothing else
    assert all("param variant: &#34;fewshot&#34; (most: &#34;zeroshot&#34;)" in f.split('"')[0] for f in flagged)
    start = index.index('data-model="org/base@c"')
    row_c = index[start:index.index("</tr>", start)]
    assert row_c.count('class="deviates"') == 2


def test_a_corrupt_samples_file_is_one_clear_error_even_from_a_worker(tmp_path):
    from evalsuite.errors import UserError
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    runs = [write_synthetic_run(tmp_path / "runs", f"r{i}", f"v{i}", 0.5, f"2026-01-0{i + 1}T00:00:00+00:00")
            for i in range(2)]  # two runs: samples are read in forked workers
    samples = runs[1] / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text('{"broken": true}\n' + "".join(lines[1:]))
    with pytest.raises(UserError, match=r"samples.jsonl:1: not a valid sample record"):
        build_site(runs, tmp_path / "site", load_config())


# -- intervals: Wilson for proportions, from the records -----------------------------------


def write_proportion_run(root: Path, model: str, correct: dict[str, tuple[int, int]]) -> Path:
    """A run whose tasks score ``k`` of ``n`` samples correct, aggregated as evalsuite does."""
    from evalsuite.metrics import aggregate_means
    from evalsuite.records import (DatasetInfo, ModelInfo, ResultsSummary, RunProvenance, SampleResult, Score,
                                   TaskProvenance)

    info = ModelInfo(id=model, backend="hf")
    tasks = {t: TaskProvenance(name=t, version="1", params={}, dataset=DatasetInfo(source="x", content_hash="0", n_rows=n),
                               template_hashes={}) for t, (_, n) in correct.items()}
    rundir = RunDir(root / model)
    rundir.write_provenance(RunProvenance(run_id=model, evalsuite_version="9.9", model=info, tasks=tasks, seed=0,
                                          batch_size=1, started_at="2026-01-01T00:00:00+00:00"))
    results = {}
    for task, (k, n) in correct.items():
        samples = [SampleResult(task=task, sample_id=str(i), score=Score(metrics={"acc": float(i < k)})) for i in range(n)]
        rundir.append(samples)
        results[task] = aggregate_means(samples, "acc")
    rundir.close()
    rundir.write_results(ResultsSummary(run_id=model, model=model, tasks=results))
    return rundir.path


def test_zero_of_ten_shows_the_wilson_interval_and_averages_use_kish_n(tmp_path):
    from evalsuite.records import wilson_interval
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    runs = [write_proportion_run(tmp_path, "org/zero", {"t1": (0, 10), "t2": (0, 30)}),
            write_proportion_run(tmp_path, "org/good", {"t1": (8, 10), "t2": (27, 30)})]
    build_site(runs, tmp_path / "site", load_config())
    index = (tmp_path / "site" / "index.html").read_text()
    start = index.index('data-model="org/zero"')
    row = index[start:index.index("</tr>", start)]
    assert '<span class="ci">[0.0, 27.8]</span>' in row  # 0 of 10: not "± 0.0"
    assert "± 0.0" not in index
    # The average of two proportions: Wilson at n_eff = 2² / (1/10 + 1/30) = 30.
    low, high = wilson_interval(0.0, 30)
    assert f'<span class="v">0.0</span> <span class="ci">[{100 * low:.1f}, {100 * high:.1f}]</span>' in row
    ranks = dict(re.findall(r'data-model="(org/\w+)">\s*<td class="rank num" data-value="(\d+)"', index))
    assert ranks == {"org/good": "1", "org/zero": "2"}


@pytest.mark.browser
def test_table_js_recomputes_the_kish_wilson_average_as_the_build_does(page, tmp_path):
    from leaderboards.builder import build_site
    from leaderboards.config import load_config

    runs = [write_proportion_run(tmp_path, "org/a", {"t1": (3, 10), "t2": (20, 30)}),
            write_proportion_run(tmp_path, "org/b", {"t1": (0, 10), "t2": (1, 30)})]
    build_site(runs, tmp_path / "site", load_config())
    html = (tmp_path / "site" / "index.html").read_text()
    built = dict(re.findall(r'data-model="(org/\w)">.*?<td class="avg num"[^>]*><span class="v">[^<]*</span> '
                            r'<span class="ci">([^<]*)</span>', html, re.S))
    assert len(built) == 2 and all(v.startswith("[") for v in built.values())
    page.goto((tmp_path / "site" / "index.html").as_uri())
    shown = "els => Object.fromEntries(els.map(e => [e.closest('tr').dataset.model, e.textContent]))"
    assert page.eval_on_selector_all("#board tbody td.avg .ci", shown) == built  # JS on load == Python build
    page.uncheck("#task-filter input[value=t2]")  # one task: the average is that task, with its own interval
    assert page.eval_on_selector_all("#board tbody td.avg .ci", shown) == page.eval_on_selector_all(
        "#board tbody td.score[data-task=t1] .ci", shown)
    page.check("#task-filter input[value=t2]")
    assert page.eval_on_selector_all("#board tbody td.avg .ci", shown) == built
