"""Typed records: the single source of every file evalsuite writes or reads.

``run.json`` holds a :class:`RunProvenance`, ``samples.jsonl`` one
:class:`SampleResult` per line and ``results.json`` a :class:`ResultsSummary`.
Readers (scoring, the gate, the leaderboard) go through these models only, so
a schema change is made in exactly one place and announced by
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import enum
import math
import re
from statistics import NormalDist
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat, field_validator

SCHEMA_VERSION = "1.0"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a Python str holds pairs as one code point


JSONL_LINE_END = re.compile(r"\r\n|\r|\n")
# Explicit bidirectional formatting characters (embeddings, overrides, isolates).
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def visible_bidi_controls(text: str) -> str:
    """``text`` with each bidi control shown as its code (``[U+202E]``), for display.

    Shown raw, a right-to-left override makes a name read as another one
    ("org/gpt-5\u202elam" displays as "org/gpt-5mal"; Trojan Source,
    CVE-2021-42574).  Files keep names as they are; pages and comments that
    show them to a person use this."""
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text, split at ``\\n``, ``\\r\\n`` or ``\\r`` only.

    ``str.splitlines`` also splits at U+2028, U+2029 and U+0085, which JSON
    writers (pydantic, ``ensure_ascii=False``) leave unescaped inside strings,
    so one record holding a model's text with such a character would read back
    as several broken lines.  (``\\r`` and other ASCII controls are always
    escaped inside JSON strings, so splitting at them is safe.)  A final line
    end ends the last line rather than starting an empty one.
    """
    lines = JSONL_LINE_END.split(text)
    return lines[:-1] if lines[-1] == "" else lines


class Record(BaseModel):
    # ser_json_inf_nan: a float that may be infinite (a log-probability of -inf)
    # is written as -Infinity, which reads back, not as null, which does not.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


def _not_nan(x: float) -> float:
    if math.isnan(x):
        raise ValueError("NaN is not a log-probability")
    return x


# Scores and their aggregates must be finite: a NaN would turn a mean, a
# bootstrap and every comparison with it into noise, silently.
LogProb = Annotated[float, AfterValidator(_not_nan)]


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: str


# A prompt is either raw text (completion models, chat template off) or a
# list of chat messages (the backend applies the model's chat template).
Prompt = Union[str, list[Message]]


class GenerationConfig(Record):
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    n: int = 1  # completions per prompt
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Sample(Record):
    """One evaluation item, as a task produced it from its dataset."""

    id: str  # unique within the task; the resume key together with the task name
    subtask: str | None = None
    input: dict[str, Any]  # the raw dataset row (or the fields the task keeps)
    target: Any
    choices: list[str] | None = None  # option texts for multiple-choice items
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelOutput(Record):
    """What a backend returned for one generation request."""

    completions: list[str]  # n texts, already cut at the first stop string
    finish_reasons: list[str] = Field(default_factory=list)  # "stop" | "length" | "eos"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False  # served from the response cache (--cache), not by the model
    endpoint: str | None = None  # the server of an endpoint pool that answered
    # A compound request's outputs (evalsuite.compound): one per turn of a
    # conversation, or one per prompt of a multi-request. The fields above
    # then hold the last turn's texts (conversation) or each part's first
    # text (multi-request), with tokens summed over the parts.
    parts: list[ModelOutput] = Field(default_factory=list)

    @field_validator("completions")
    @classmethod
    def _no_lone_surrogates(cls, texts: list[str]) -> list[str]:
        # A JSON API (or a mock's JSON file) can decode "\ud800" to a lone
        # surrogate, which no UTF-8 file can hold: writing the record would fail
        # after the work is done.  U+FFFD keeps the text's length and position.
        return [LONE_SURROGATE.sub("\ufffd", t) for t in texts]


class LoglikelihoodResult(Record):
    """Log-probabilities of each continuation given one shared context."""

    logprobs: list[LogProb]  # -inf allowed (probability 0), NaN not
    is_greedy: list[bool]
    token_counts: list[int]
    cached: bool = False  # served from the response cache (--cache), not by the model


class ScoreStatus(str, enum.Enum):
    SCORED = "scored"
    # Everything below is *not* folded into metrics; counts are reported.
    GENERATED = "generated"  # generation done, scoring deferred (--generate-only)
    GENERATION_ERROR = "generation_error"
    PARSE_ERROR = "parse_error"  # e.g. a judge reply without a grade
    SANDBOX_ERROR = "sandbox_error"
    SCORING_ERROR = "scoring_error"


JudgeMode = Literal["single", "pairwise", "rubric"]
# A parsed verdict: a rating (single), "a" | "b" | "tie" (pairwise, in the
# candidates' own order, whatever position each was shown in), or one value
# per named criterion (rubric).
Verdict = Union[float, str, dict[str, Union[float, str]], None]


class Judgment(Record):
    """One LLM-judge verdict: what was asked, what the judge said, what it means.

    The raw replies are kept whether or not a verdict was found; a judgment
    with ``status == parse_error`` never enters a score (evalsuite.judging).
    """

    role: str  # what it judged within the sample: "turn_1", "turn_2", "completion_3", ...
    mode: JudgeMode
    template: str  # judge prompt template name; its hash is in run.json
    prompt_hash: str  # sha256 of the judge conversation as sent
    key: str = ""  # cache key: judge model + decoding + conversation (judgments.jsonl)
    judge: str = ""  # judge model id
    replies: list[str] = Field(default_factory=list)  # one per judge turn; the verdict is read from the last
    status: ScoreStatus = ScoreStatus.SCORED  # scored | parse_error
    verdict: Verdict = None
    detail: str | None = None  # why there is no verdict, or which candidates were set aside
    swapped: bool = False  # pairwise: candidate b was shown first (position A)
    answer_chars: list[int] = Field(default_factory=list)  # length of each judged answer (a, b), in characters
    retries: list[list[str]] = Field(default_factory=list)  # earlier replies without a verdict (-J retries=N)
    quoted: int = 0  # verdict-like text set aside as quoted or copied from the judged material
    truncated: bool = False  # the last reply stopped at the judge's max_new_tokens
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Score(Record):
    """The verdict on one sample."""

    status: ScoreStatus = ScoreStatus.SCORED
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)  # e.g. {"exact_match": 1.0}; NaN/inf refused
    answer: Any = None  # the extracted answer, if any
    detail: str | None = None  # why it was not scored, or per-completion verdicts
    judgments: list[Judgment] = Field(default_factory=list)  # judged tasks: every judge call behind the score


class SampleResult(Record):
    """One line of samples.jsonl."""

    schema_version: str = SCHEMA_VERSION
    task: str
    sample_id: str
    subtask: str | None = None
    prompt: Prompt | None = None  # as sent to the model (a conversation: its system and user turns)
    # A multi-request (evalsuite.compound): every prompt it sent, in order; ``prompt`` is None.
    prompts: list[Prompt] | None = None
    prompt_hash: str = ""
    target: Any = None
    output: ModelOutput | None = None
    loglikelihood: LoglikelihoodResult | None = None
    score: Score
    error: str | None = None
    duration_s: float = 0.0


class ServerInfo(Record):
    """What an OpenAI-compatible server says about the model it serves."""

    base_urls: list[str]  # the endpoint pool, credentials stripped
    model: str  # the model name sent in each request
    models_entry: dict[str, Any] = Field(default_factory=dict)  # its /v1/models entry (root, max_model_len, ...)
    version: str | None = None  # /version (vLLM)
    command: list[str] | None = None  # full server command line (managed vLLM)
    prefill: str | None = None  # how a prefilled assistant turn is sent (see backends/openai_api.py)
    loglikelihood: str | None = None  # "on", or "off: <why>"


class ModelInfo(Record):
    id: str
    backend: str
    path: str | None = None
    revision: str | None = None
    file_hash: str | None = None
    dtype: str | None = None
    device: str | None = None
    parameters: int | None = None
    chat_template: bool = False
    chat_template_hash: str | None = None
    linear_kernel: str | None = None  # local models: "onednn" or "aten" (PyTorch's default) for linear layers
    server: ServerInfo | None = None  # served models (openai, vllm backends)

    def identity(self) -> dict[str, Any]:
        """Which model this is, whatever ran it: id, backend, weights (file_hash,
        revision).  Equal identities give the same outputs for the same prompts."""
        return self.model_dump(include={"id", "backend", "file_hash", "revision"})


class DatasetInfo(Record):
    source: str  # hub id or local path
    content_hash: str
    n_rows: int


class TaskProvenance(Record):
    name: str
    version: str
    params: dict[str, Any]
    dataset: DatasetInfo
    template_hashes: dict[str, str]
    generation: GenerationConfig | None = None
    system_message: str | None = None
    judge_templates: dict[str, str] = Field(default_factory=dict)  # judge prompt name -> sha256

    def setup(self) -> dict[str, Any]:
        """What decides the task's prompts, targets and scoring, by label.

        Two runs whose setups differ did not evaluate the same thing (the gate
        refuses to compare them; ``--resume`` refuses to mix them)."""
        return {
            "task version": self.version,
            "task parameters": self.params,
            "prompt template hashes": self.template_hashes,
            "dataset content hash": self.dataset.content_hash,
            "generation config": self.generation,
            "system message": self.system_message,
            "judge prompt hashes": self.judge_templates,
        }


class JudgeInfo(Record):
    """The LLM judge of a run's judged tasks (``--judge``)."""

    spec: str  # as given to --judge
    model: ModelInfo  # id, backend, file hash or revision
    generation: GenerationConfig  # the judge's decoding (default: temperature 0, 2,048 new tokens)
    retries: int = 0  # extra judge calls allowed after a reply without a verdict
    self_judging: bool = False  # the judge is the evaluated model


class RunLink(Record):
    run_id: str
    path: str


class ReplicaInfo(Record):
    """Where one data-parallel replica ran."""

    index: int
    node: str  # the Ray node's IP address
    host: str | None = None
    pid: int | None = None
    device: str | None = None  # the replica backend's device (cpu, cuda, ...)
    gpu_ids: list[str] = Field(default_factory=list)  # as Ray assigned them
    lost: str | None = None  # why it died mid-run; its unfinished requests went to the others


class RayInfo(Record):
    """Data parallelism over Ray (``--ray``)."""

    version: str
    address: str  # "local": a private instance started and stopped by the run
    replicas: int
    num_gpus: float  # per replica
    num_cpus: float
    unit: int  # requests per call
    inflight: int  # calls queued per replica
    replica_info: list[ReplicaInfo] = Field(default_factory=list)


class Continuation(Record):
    """One ``evalsuite run --resume`` of a run: what continued it, and when."""

    command: list[str]
    started_at: str
    evalsuite_version: str
    git_sha: str | None = None


class RunProvenance(Record):
    """run.json: everything needed to reproduce the run."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    evalsuite_version: str  # these three: the process that started the run (see ``continued``)
    git_sha: str | None = None
    command: list[str] = Field(default_factory=list)
    command_config: dict[str, Any] = Field(default_factory=dict)  # what --resume restores
    model: ModelInfo
    tasks: dict[str, TaskProvenance]
    seed: int
    batch_size: int | str
    limit: int | None = None
    started_at: str
    finished_at: str | None = None
    platform: dict[str, str] = Field(default_factory=dict)
    judge: JudgeInfo | None = None
    # `evalsuite judge`: the run whose outputs this run judged again (nothing was generated here).
    generation_run: RunLink | None = None
    ray: RayInfo | None = None  # set when replicas ran on Ray
    continued: list[Continuation] = Field(default_factory=list)  # each --resume, in order


CI_LEVEL = 0.95  # the coverage of every interval a MetricValue carries


class MetricValue(Record):
    """A mean over samples with its standard error and a 95 % interval.

    ``ci`` is ``[low, high]``.  ``ci_method`` says how it was made: "wilson"
    for a proportion (every sample scored 0 or 1; honest at 0 % and 100 %,
    where value ± 1.96 stderr collapses to a point), "normal" (value ± z·stderr,
    cut to [0, 1] when every sample's value lies in [0, 1]) otherwise.  ``n`` is the sample count behind the interval; for a macro mean
    of proportions it is Kish's effective size (see evalsuite.metrics).
    """

    value: FiniteFloat
    stderr: FiniteFloat | None = None
    ci: tuple[FiniteFloat, FiniteFloat] | None = None
    ci_method: Literal["wilson", "normal"] | None = None
    n: FiniteFloat | None = None


def wilson_interval(p: float, n: float, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials.

    Wilson (1927), JASA 22:209; recommended over the Wald interval by Agresti
    & Coull (1998) and Brown, Cai & DasGupta (2001).  ``n`` may be fractional
    (an effective sample size).  0/10 gives [0, 0.2775].  Raises ValueError
    for n <= 0 or p outside [0, 1].
    """
    if n <= 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"wilson_interval needs n > 0 and 0 <= p <= 1, got p={p}, n={n}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # Exact ends at 0 % and 100 % (no rounding residue such as 1e-17).
    return (0.0 if p == 0.0 else max(0.0, centre - half), 1.0 if p == 1.0 else min(1.0, centre + half))


class Correlation(Record):
    method: str  # "spearman"
    rho: float | None  # None when undefined (constant input)
    p_value: float | None
    n: int


class PairwiseOutcome(Record):
    """Pairwise grading against one opponent: each judged pair decided in both orders."""

    opponent: str  # the baseline's model id
    wins: int
    losses: int
    ties: int  # including the inconsistent ones
    inconsistent: int  # the verdict flipped with position: counted as a tie (MT-Bench)
    win_rate: float  # (wins + ties / 2) / judged pairs
    stderr: float | None = None
    ci_low: float | None = None  # 95% percentile bootstrap over samples (None: fewer than 2)
    ci_high: float | None = None


class JudgingSummary(Record):
    """How the judge behaved on a task: reported next to every judged score."""

    judge: str | None = None  # judge model id; None when the evaluated model is the judge under test
    self_judging: bool = False
    judgments: int = 0
    parse_errors: int = 0  # judgments without a verdict: never in a score
    parse_error_rate: float | None = None
    quoted_verdicts: int = 0  # verdict-like text set aside as quoted from the judged material
    retried: int = 0  # judgments that needed a retry (-J retries=N)
    length_correlation: Correlation | None = None  # answer length (characters) vs grade
    # Pairwise judging (both orders of every pair):
    position_consistency: float | None = None  # share of pairs with the same verdict in both orders
    first_position_win_share: float | None = None  # share of single-order verdicts won by the first position
    tie_rate: float | None = None  # share of single-order verdicts that were ties
    outcome: PairwiseOutcome | None = None  # the evaluated model against a baseline


class SubtaskResult(Record):
    n_samples: int
    metrics: dict[str, MetricValue]
    status_counts: dict[str, int] = Field(default_factory=dict)


class TaskResult(Record):
    n_samples: int
    metrics: dict[str, MetricValue]
    headline: str  # key into ``metrics`` of the headline number
    # With subtasks: whether ``metrics[headline]`` is the macro or micro mean.
    headline_aggregation: Literal["macro", "micro"] | None = None
    subtasks: dict[str, SubtaskResult] = Field(default_factory=dict)
    status_counts: dict[str, int] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)  # e.g. counted data quirks
    judging: JudgingSummary | None = None  # judged tasks and judge-agreement tasks
    # One line each, shown with the result: e.g. why a requested metric is missing.
    warnings: list[str] = Field(default_factory=list)


class ResultsSummary(Record):
    """results.json."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    model: str
    tasks: dict[str, TaskResult]
