"""Score-over-checkpoints charts, drawn as static SVG at build time.

No JavaScript charting library: the chart is plain SVG text, so it renders
from file:// and can be downloaded as-is. Every piece of text is XML-escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from leaderboards.collect import Board, ModelRow

# Colour-blind-safe palette (Okabe–Ito), cycled per task.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 170, 20, 56


@dataclass
class Series:
    name: str
    rows: list[ModelRow]  # ordered checkpoints


def series_of(board: Board) -> list[Series]:
    """Model series with at least two checkpoints, checkpoints in order."""
    groups: dict[str, list[ModelRow]] = {}
    for row in board.rows:
        if row.checkpoint is not None:
            groups.setdefault(row.series, []).append(row)
    out = []
    for name, rows in sorted(groups.items()):
        if len(rows) < 2:
            continue
        if all(r.step is not None for r in rows):
            rows.sort(key=lambda r: (r.step, r.checkpoint))
        else:  # no step numbers: order by when they were evaluated
            rows.sort(key=lambda r: r.started_at)
        out.append(Series(name, rows))
    return out


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo or 1.0
    raw = span / count
    step = min((m * 10**e for e in range(-3, 7) for m in (1, 2, 2.5, 5) if m * 10**e >= raw), default=raw)
    first = (lo // step) * step
    ticks, v = [], first
    while v <= hi + 1e-9:
        if v >= lo - 1e-9:
            ticks.append(round(v, 6))
        v += step
    return ticks


def svg_chart(series: Series, tasks: list[str], labels: dict[str, str], decimals: int, note: str = "") -> str:
    rows = series.rows
    numeric = all(r.step is not None for r in rows)
    xs_raw = [r.step if numeric else float(i) for i, r in enumerate(rows)]
    x_lo, x_hi = min(xs_raw), max(xs_raw)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v: float) -> float:
        inset = 16  # keep end points and their error bars off the frame
        return LEFT + inset + (v - x_lo) / ((x_hi - x_lo) or 1.0) * (plot_w - 2 * inset)

    points = {
        t: [(xs_raw[i], r.cells[t].score) for i, r in enumerate(rows) if t in r.cells and r.cells[t].score]
        for t in tasks
    }
    shown = [t for t in tasks if points[t]]
    values = [
        bound
        for t in shown
        for _, s in points[t]
        for bound in (s.bounds or (s.value, s.value))
    ]
    y_lo, y_hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (y_hi - y_lo) * 0.05 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def y(v: float) -> float:
        return TOP + (1 - (v - y_lo) / (y_hi - y_lo)) * plot_h

    title = f"Scores over checkpoints of {series.name}{note}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#bbb"/>',
    ]
    for tick in _ticks(y_lo, y_hi):
        ty = y(tick)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#444">{tick:g}</text>')
    for i, row in enumerate(rows):
        tx = x(xs_raw[i])
        label = escape(row.checkpoint or row.key)
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" stroke="#888"/>')
        out.append(
            f'<text x="{tx:.1f}" y="{TOP + plot_h + 16}" text-anchor="end" fill="#444" '
            f'transform="rotate(-30 {tx:.1f} {TOP + plot_h + 16})">{label}</text>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" fill="#222">'
        f'{"checkpoint (by step)" if numeric else "checkpoint (by evaluation date)"}</text>'
    )
    out.append(
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#222" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">headline score</text>'
    )
    for k, task in enumerate(shown):
        colour = PALETTE[k % len(PALETTE)]
        pts = points[task]
        path = " ".join(f"{x(px):.1f},{y(s.value):.1f}" for px, s in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, s in pts:
            cx, cy = x(px), y(s.value)
            if s.bounds:
                out.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(s.bounds[0]):.1f}" '
                    f'y2="{y(s.bounds[1]):.1f}" stroke="{colour}" stroke-opacity="0.5"/>'
                )
            ci = f" [{s.bounds[0]:.{decimals}f}, {s.bounds[1]:.{decimals}f}]" if s.bounds else ""
            out.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(labels.get(task, task))}: {s.value:.{decimals}f}{ci}</title></circle>"
            )
        ly = TOP + 14 + 18 * k
        out.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 30}" y="{ly + 1}" fill="#222">{escape(labels.get(task, task))}</text>')
    out.append("</svg>")
    return "\n".join(out)
