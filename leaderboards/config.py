"""Display settings for the leaderboard, read from a TOML file.

Task code never decides how a leaderboard looks; ``leaderboards/config.toml``
does (labels, headline metric, direction, groups, columns), and ``--config``
overrides it key by key.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.errors import UserError

DEFAULT_CONFIG = Path(__file__).with_name("config.toml")
KNOWN_COLUMNS = ("rank", "model", "parameters", "dtype", "revision", "prompt", "date", "average")


@dataclass(frozen=True)
class TaskDisplay:
    label: str
    headline: str | None  # None: the task's own headline from results.json
    higher_is_better: bool
    in_average: bool
    scale: float


@dataclass(frozen=True)
class SiteConfig:
    title: str = "evalsuite leaderboard"
    columns: tuple[str, ...] = ("rank", "model", "parameters", "dtype", "prompt", "average")
    scale: float = 100.0
    decimals: int = 1
    page_size: int = 20
    chunk_size: int = 100
    labels: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def label(self, column: str) -> str:
        return self.labels.get(column, column.capitalize())

    def task(self, name: str) -> TaskDisplay:
        raw = self.tasks.get(name, {})
        hib = bool(raw.get("higher_is_better", True))
        return TaskDisplay(
            label=str(raw.get("label", name)),
            headline=raw.get("headline"),
            higher_is_better=hib,
            # Averaging a lower-is-better number with accuracies is meaningless.
            in_average=bool(raw.get("in_average", hib)),
            scale=float(raw.get("scale", self.scale)),
        )

    def task_order(self, names: set[str]) -> list[str]:
        """Configured tasks first, in config order, then the rest alphabetically."""
        listed = [n for n in self.tasks if n in names]
        return listed + sorted(names - set(listed))

    def groups_for(self, names: list[str]) -> dict[str, list[str]]:
        out = {}
        for group, patterns in self.groups.items():
            members = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
            if members:
                out[group] = members
        return out


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc})") from None


def load_config(override: Path | None = None) -> SiteConfig:
    data = _read(DEFAULT_CONFIG)
    if override is not None:
        extra = _read(override)
        for section, values in extra.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                if section == "tasks":
                    for task, opts in values.items():
                        data["tasks"][task] = {**data["tasks"].get(task, {}), **opts}
                else:
                    data[section] = {**data[section], **values}
            else:
                data[section] = values
    where = f"{override or DEFAULT_CONFIG}"
    site = data.get("site", {})
    columns = tuple(site.get("columns", SiteConfig.columns))
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        raise UserError(f"{where}: unknown column(s) {', '.join(unknown)}; known: {', '.join(KNOWN_COLUMNS)}")
    try:
        cfg = SiteConfig(
            title=str(site.get("title", SiteConfig.title)),
            columns=columns,
            scale=float(site.get("scale", SiteConfig.scale)),
            decimals=int(site.get("decimals", SiteConfig.decimals)),
            page_size=int(site.get("page_size", SiteConfig.page_size)),
            chunk_size=int(site.get("chunk_size", SiteConfig.chunk_size)),
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            tasks={str(k): dict(v) for k, v in data.get("tasks", {}).items()},
            groups={str(k): tuple(v) for k, v in data.get("groups", {}).items()},
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: invalid value ({exc})") from None
    if cfg.page_size < 1 or cfg.chunk_size < 1:
        raise UserError(f"{where}: page_size and chunk_size must be positive")
    return cfg
