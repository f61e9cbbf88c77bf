"""The leaderboard as text and as a PNG table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from course_tools.plots import figure_png, new_figure


class Row(Protocol):
    name: str
    val: float
    test: float
    seconds: float
    note: str


def leaderboard_text(rows: Sequence[Row], metric: str) -> str:
    """A fixed-width table: model, validation and test scores, fit seconds, notes."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'model':<{width}}  {'val ' + metric:>9}  {'test ' + metric:>9}  {'fit s':>6}"]
    for r in rows:
        seconds = f"{r.seconds:6.0f}" if r.seconds else f"{'':6}"
        note = f"  {r.note}" if r.note else ""
        lines.append(f"{r.name:<{width}}  {r.val:9.4f}  {r.test:9.4f}  {seconds}{note}")
    return "\n".join(lines)


def leaderboard_png(rows: Sequence[Row], best: str, baseline: str, metric: str,
                    title: str) -> bytes:
    """The leaderboard as a table image; the chosen ensemble in green, the baseline in grey."""
    fig = new_figure(8.5, 0.3 * len(rows) + 0.9)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    cells = [[r.name, f"{r.val:.4f}", f"{r.test:.4f}", f"{r.seconds:.0f}" if r.seconds else ""]
             for r in rows]
    table = ax.table(cellText=cells, colLabels=["model", f"validation {metric}",
                                                f"test {metric}", "fit s"],
                     loc="center", cellLoc="left", colWidths=[0.5, 0.18, 0.18, 0.1])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.4)
    for i, r in enumerate(rows, start=1):
        colour = "#c8efc8" if r.name == best else "#e6e6e6" if r.name == baseline else None
        if colour:
            for j in range(4):
                table[i, j].set_facecolor(colour)
    ax.set_title(f"{title}: leaderboard", fontsize=11)
    return figure_png(fig)
