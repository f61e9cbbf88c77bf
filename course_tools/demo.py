"""``demo.montecarlo_pi``: estimate π by throwing random points at a square.

A small, real tool that exercises the whole job machinery (progress, cancellation, plots,
artifacts) in a couple of seconds, so the bot and its tests have a tool that needs no course data.
"""

from __future__ import annotations

import io
import math
import time
from typing import Any

from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec

BATCHES = 50


class EstimateParams(ToolParams):
    """Parameters of one estimate."""

    n: int = Field(default=200_000, ge=1_000, le=5_000_000, description="points to sample")
    pace: float = Field(
        default=0.0, ge=0.0, le=1.0, description="seconds to pause after each of the 50 batches"
    )


class SweepParams(ToolParams):
    """Parameters of a convergence sweep over growing sample sizes."""

    n_max: int = Field(
        default=2_000_000, ge=10_000, le=50_000_000, description="largest sample size"
    )
    sizes: int = Field(default=8, ge=3, le=20, description="how many sample sizes to try")
    repeats: int = Field(default=5, ge=1, le=50, description="estimates per sample size")
    pace: float = Field(
        default=0.0, ge=0.0, le=1.0, description="seconds to pause after each estimate"
    )


def _sample_inside(rng: Any, count: int) -> tuple[int, Any]:
    points = rng.random((count, 2))
    inside = (points * points).sum(axis=1) <= 1.0
    return int(inside.sum()), (points, inside)


def estimate(ctx: ToolContext[EstimateParams]) -> ToolResult:
    """Sample ``n`` points in the unit square; 4 × (share inside the quarter circle) ≈ π."""
    import numpy as np

    params = ctx.params
    rng = np.random.default_rng(params.seed)
    batch = max(params.n // BATCHES, 1)
    done = hits = 0
    curve: list[tuple[int, float]] = []
    shown_points: list[Any] = []
    shown_masks: list[Any] = []
    kept = 0
    ctx.report(0.0, f"sampling {params.n:,} points")
    while done < params.n:
        count = min(batch, params.n - done)
        inside, (points, mask) = _sample_inside(rng, count)
        if kept < 2000:
            shown_points.append(points[: 2000 - kept])
            shown_masks.append(mask[: 2000 - kept])
            kept += len(shown_points[-1])
        hits += inside
        done += count
        curve.append((done, 4.0 * hits / done))
        ctx.report(done / params.n, f"{done:,}/{params.n:,} points, π ≈ {curve[-1][1]:.5f}")
        if params.pace:
            _pause(ctx, params.pace)
    pi_hat = 4.0 * hits / done
    share = hits / done
    std_error = 4.0 * math.sqrt(share * (1.0 - share) / done)
    png = _estimate_plot((np.concatenate(shown_points), np.concatenate(shown_masks)), curve)
    csv = ctx.work_dir / "convergence.csv"
    csv.write_text("points,estimate\n" + "".join(f"{n},{v:.8f}\n" for n, v in curve))
    metrics = {
        "pi_estimate": pi_hat,
        "abs_error": abs(pi_hat - math.pi),
        "std_error": std_error,
        "points": float(done),
    }
    return ToolResult(
        text=(f"π ≈ {pi_hat:.6f} from {done:,} points (error {abs(pi_hat - math.pi):.2e}, "
              f"standard error {std_error:.2e})."),
        metrics=metrics,
        images=[("montecarlo_pi.png", png)],
        artifacts={"convergence.csv": csv},
        follow_up="/run demo.montecarlo_pi sweep — to see the error shrink like 1/√n",
    )


def sweep(ctx: ToolContext[SweepParams]) -> ToolResult:
    """Estimate π at growing sample sizes and fit how fast the error shrinks (≈ n^-0.5)."""
    import numpy as np

    params = ctx.params
    rng = np.random.default_rng(params.seed)
    sizes = np.unique(np.geomspace(1_000, params.n_max, params.sizes).astype(int))
    errors: list[float] = []
    total = len(sizes) * params.repeats
    step = 0
    for size in sizes:
        runs = []
        for _ in range(params.repeats):
            hits = 0
            left = int(size)
            while left:  # in chunks, so memory stays small and cancellation stays quick
                count = min(left, 1_000_000)
                hits += _sample_inside(rng, count)[0]
                left -= count
                ctx.check_cancelled()
            runs.append(abs(4.0 * hits / size - math.pi))
            step += 1
            ctx.report(step / total, f"n = {int(size):,}: run {len(runs)}/{params.repeats}")
            if params.pace:
                _pause(ctx, params.pace)
        errors.append(float(np.mean(runs)))
    slope, intercept = np.polyfit(np.log(sizes), np.log(np.maximum(errors, 1e-12)), 1)
    png = _sweep_plot(sizes, errors, float(slope), float(intercept))
    return ToolResult(
        text=(f"Mean |π̂ − π| falls like n^{slope:.2f} (theory: n^-0.5) over "
              f"{len(sizes)} sample sizes up to {int(sizes[-1]):,}."),
        metrics={"slope": float(slope), "abs_error": errors[-1], "sizes": float(len(sizes))},
        images=[("montecarlo_pi_sweep.png", png)],
        follow_up="/run demo.montecarlo_pi n=1000000 — for a single estimate with a plot",
    )


def _pause(ctx: ToolContext, seconds: float) -> None:
    """Sleep in short steps so that a cancel lands quickly."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ctx.check_cancelled()
        time.sleep(min(left, 0.05))


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _estimate_plot(shown: Any, curve: list[tuple[int, float]]) -> bytes:
    from matplotlib.figure import Figure

    points, mask = shown
    fig = Figure(figsize=(9, 4))
    left, right = fig.subplots(1, 2)
    left.scatter(points[mask, 0], points[mask, 1], s=2, c="tab:blue", label="inside")
    left.scatter(points[~mask, 0], points[~mask, 1], s=2, c="tab:orange", label="outside")
    left.set_aspect("equal")
    left.set_title(f"First {len(points):,} points")
    left.legend(loc="lower left", fontsize=8)
    right.plot([n for n, _ in curve], [v for _, v in curve], label="estimate")
    right.axhline(math.pi, color="black", linestyle="--", linewidth=1, label="π")
    right.set_xscale("log")
    right.set_xlabel("points sampled")
    right.set_title("Running estimate")
    right.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _sweep_plot(sizes: Any, errors: list[float], slope: float, intercept: float) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.loglog(sizes, errors, "o-", label="mean |π̂ − π|")
    ax.loglog(sizes, np.exp(intercept) * sizes**slope, "--", label=f"fit: n^{slope:.2f}")
    ax.loglog(sizes, errors[0] * np.sqrt(sizes[0] / sizes), ":", label="n^-0.5")
    ax.set_xlabel("points sampled")
    ax.set_ylabel("absolute error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


SPEC = register(ToolSpec(
    name="demo.montecarlo_pi",
    course="demo",
    summary="Estimate π by sampling random points (a quick demo of background jobs).",
    commands=(
        ToolCommand("run", estimate, EstimateParams,
                    "One estimate of π with a plot of the points and the running estimate.",
                    heavy=False),
        ToolCommand("sweep", sweep, SweepParams,
                    "How the error shrinks with the number of points (log-log fit).",
                    heavy=True),
    ),
    examples=(
        "estimate pi with monte carlo",
        "approximate pi by random sampling",
        "monte carlo estimate of pi",
        "compute pi with random points",
        "run the monte carlo pi demo with a million points",
    ),
    headline_metric="abs_error",
))
