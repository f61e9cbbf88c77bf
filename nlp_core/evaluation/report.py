"""Evaluation artefacts people read, after Rasa's ``rasa test nlu``: a JSON report of metrics,
a ``*_errors.json`` listing every miss, and a figure (a confusion matrix) as PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _jsonable(value: Any) -> Any:
    """Plain JSON types for numpy scalars/arrays, paths and non-finite floats."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(
    out_dir: Path,
    name: str,
    metrics: dict[str, Any],
    errors: list[dict[str, Any]],
    figure: Figure | None = None,
    figure_name: str = "confusion",
) -> Path:
    """Write ``<name>_report.json``, ``<name>_errors.json`` and ``<name>_<figure_name>.png``.

    Returns the report's path. The report holds the metrics, when it was made and the paths of
    the other two files; the figure is closed once saved.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / f"{name}_report.json"
    errors_path = out_dir / f"{name}_errors.json"
    errors_path.write_text(json.dumps(_jsonable(errors), indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    files = {"errors": errors_path.name}
    if figure is not None:
        import matplotlib.pyplot as plt

        figure_path = out_dir / f"{name}_{figure_name}.png"
        figure.savefig(figure_path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        files["figure"] = figure_path.name
    report = {
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": _jsonable(metrics),
        "n_errors": len(errors),
        "files": files,
    }
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    return report_path


def confusion_figure(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None,
    *, title: str = "Confusion matrix", normalize: bool = True,
) -> Figure:
    """A confusion-matrix figure (rows: truth, columns: prediction), drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    names = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    counts = confusion_matrix(list(y_true), list(y_pred), labels=names)
    shown = counts.astype(float)
    if normalize:
        totals = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
    size = max(4.0, 0.55 * len(names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if shown[i, j] > 0.5 else "black")
    figure.tight_layout()
    return figure


def print_metrics(metrics: dict[str, Any], *, as_json: bool, echo: Any = print) -> None:
    """Print metrics one per line, or (``as_json``) as one JSON object on the last line."""
    if as_json:
        echo(json.dumps(_jsonable(metrics), sort_keys=True))
        return
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        echo(f"{key:32s} {shown}")
