"""The demo tool, run in-process: a real estimate, progress, cancellation and a plot."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from course_tools.base import JobCancelled, ToolContext
from course_tools.demo import SPEC, EstimateParams, SweepParams

PNG = b"\x89PNG\r\n\x1a\n"


def test_estimate_is_close_to_pi_and_reports_progress(tmp_path: Path) -> None:
    seen: list[float] = []
    ctx = ToolContext(EstimateParams(n=200_000), tmp_path, progress=lambda f, _d: seen.append(f))
    result = SPEC.command("run").func(ctx)
    assert abs(result.metrics["pi_estimate"] - math.pi) < 4 * result.metrics["std_error"]
    assert result.metrics["abs_error"] == abs(result.metrics["pi_estimate"] - math.pi)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) == 51
    (name, png), = result.images
    assert name.endswith(".png") and png.startswith(PNG)
    assert result.artifacts["convergence.csv"].read_text().startswith("points,estimate\n")


def test_same_seed_same_estimate(tmp_path: Path) -> None:
    run = SPEC.command("run").func
    first = run(ToolContext(EstimateParams(n=5_000, seed=3), tmp_path)).metrics
    again = run(ToolContext(EstimateParams(n=5_000, seed=3), tmp_path)).metrics
    other = run(ToolContext(EstimateParams(n=5_000, seed=4), tmp_path)).metrics
    assert first == again and first != other


def test_sweep_error_shrinks_like_one_over_root_n(tmp_path: Path) -> None:
    params = SweepParams(n_max=400_000, sizes=6, repeats=8)
    result = SPEC.command("sweep").func(ToolContext(params, tmp_path))
    assert -0.8 < result.metrics["slope"] < -0.25
    assert result.images[0][1].startswith(PNG)


def test_cancel_stops_the_estimate(tmp_path: Path) -> None:
    cancel = threading.Event()

    def progress(fraction: float, _detail: str) -> None:
        if fraction > 0.1:
            cancel.set()

    ctx = ToolContext(EstimateParams(n=1_000_000), tmp_path, progress=progress,
                      cancel_event=cancel)
    with pytest.raises(JobCancelled):
        SPEC.command("run").func(ctx)
