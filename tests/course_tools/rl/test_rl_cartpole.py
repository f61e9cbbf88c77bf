"""CartPole agents: short real training runs, saved agents, GIF replays, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from course_tools.base import JobCancelled, ToolContext, ToolParams, ToolResult
from course_tools.plots import is_gif, is_png
from course_tools.rl.cem import CEMParams, train_cem
from course_tools.rl.common import PlayParams, evaluate_cartpole, play
from course_tools.rl.deep import (
    A2CParams,
    DQNParams,
    ReinforceParams,
    train_a2c,
    train_dqn,
    train_reinforce,
)


def test_cem_solves_cartpole_and_replays(tmp_path: Path) -> None:
    result = train_cem(ToolContext(params=CEMParams(seed=1), work_dir=tmp_path / "train"))
    assert result.metrics["solved"] == 1.0
    assert result.metrics["mean_reward"] >= 475  # 100 fresh evaluation episodes
    images = dict(result.images)
    assert is_png(images["learning_curve.png"]) and is_gif(images["episode.gif"])
    replay = play(ToolContext(params=PlayParams(job="train"),
                              work_dir=tmp_path / "play"))
    assert is_gif(replay.images[0][1])
    assert replay.metrics["mean_reward"] >= 200


def test_short_dqn_run_returns_png_and_gif(tmp_path: Path) -> None:
    params = DQNParams(steps=2_000, learning_starts=500, train_freq=64, gradient_steps=16,
                       hidden=32, eval_every=1_000, eval_episodes=5)
    result = train_dqn(ToolContext(params=params, work_dir=tmp_path))
    images = dict(result.images)
    assert is_png(images["learning_curve.png"]) and is_gif(images["episode.gif"])
    assert result.metrics["train_steps"] >= 1_000
    assert (tmp_path / "agent.pt").is_file()


@pytest.mark.parametrize("func,params", [
    (train_reinforce, ReinforceParams(steps=3_000, batch_episodes=8, eval_every=1_500,
                                      eval_episodes=5)),
    (train_a2c, A2CParams(steps=3_000, n_envs=4, eval_every=1_500, eval_episodes=5)),
])
def test_policy_gradient_runs(
    tmp_path: Path, func: Callable[[ToolContext], ToolResult], params: ToolParams
) -> None:
    result = func(ToolContext(params=params, work_dir=tmp_path))
    assert is_gif(dict(result.images)["episode.gif"])
    assert result.metrics["train_steps"] >= 3_000
    assert np.isfinite(result.metrics["mean_reward"])


def test_capped_evaluation_is_exact_when_it_passes_and_an_upper_bound_otherwise() -> None:
    always_right = lambda obs: np.ones(len(obs), dtype=np.int64)  # noqa: E731
    full, returns = evaluate_cartpole(always_right, episodes=20, seed=3)
    capped, _ = evaluate_cartpole(always_right, episodes=20, seed=3, target=475)
    assert full == returns.mean() < 20  # pushing right topples the pole fast
    assert full <= capped < 475


# Without a working cancel these would run for hours: the timeout turns that into a failure.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("func,params", [
    (train_cem, CEMParams(steps=50_000_000, stop_when_solved=False)),
    (train_dqn, DQNParams(steps=5_000_000, learning_starts=100, train_freq=50)),
])
def test_cancel_mid_run_raises_promptly(
    tmp_path: Path, func: Callable[[ToolContext], ToolResult], params: ToolParams
) -> None:
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        with pytest.raises(JobCancelled):
            func(ToolContext(params=params, work_dir=tmp_path, cancel_event=cancel))
    finally:
        timer.cancel()
