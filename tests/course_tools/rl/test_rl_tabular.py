"""Tabular RL tools on the real gymnasium toy-text envs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from course_tools.base import ToolContext
from course_tools.plots import is_gif, is_png
from course_tools.rl.common import PlayParams, TabularMDP, make_env, play
from course_tools.rl.tabular import (
    PlanningParams,
    TDParams,
    policy_iteration,
    train_policy_iteration,
    train_td,
    train_value_iteration,
    value_iteration,
)

# The optimal policy of slippery FrozenLake 4x4 (gamma 0.99), as in the Sutton & Barto /
# Practical RL solutions: 0=left 1=down 2=right 3=up; holes and the goal (5, 7, 11, 12, 15)
# have no meaningful action.
OPTIMAL_4X4 = {0: 0, 1: 3, 2: 3, 3: 3, 4: 0, 6: 0, 8: 3, 9: 1, 10: 0, 13: 2, 14: 1}


def test_value_iteration_finds_the_known_optimal_frozenlake_policy() -> None:
    mdp = TabularMDP.from_env(make_env("FrozenLake-v1"))
    values, policy, deltas = value_iteration(mdp, gamma=0.99, tol=1e-10, iterations=10_000)
    assert deltas[-1] < 1e-10
    assert {s: int(policy[s]) for s in OPTIMAL_4X4} == OPTIMAL_4X4
    # Known optimal values (gamma 0.99): V(start) ~ 0.542, V(14) ~ 0.861.
    assert abs(values[0] - 0.542) < 2e-3
    assert abs(values[14] - 0.861) < 2e-3
    # Policy iteration agrees with value iteration.
    pi_values, pi_policy, _ = policy_iteration(mdp, gamma=0.99, iterations=100)
    assert np.allclose(pi_values, values, atol=1e-6)
    assert {s: int(pi_policy[s]) for s in OPTIMAL_4X4} == OPTIMAL_4X4


def test_value_iteration_tool_success_rate_over_10k_episodes(tmp_path: Path) -> None:
    result = train_value_iteration(ToolContext(params=PlanningParams(), work_dir=tmp_path))
    assert abs(result.metrics["success_rate"] - 0.74) <= 0.03
    names = dict(result.images)
    assert is_png(names["learning_curve.png"]) and is_gif(names["episode.gif"])
    assert (tmp_path / "agent.json").is_file()


def test_simulation_matches_the_real_env() -> None:
    """The vectorised episode loop agrees with gymnasium's own stepping on the same policy."""
    env = make_env("FrozenLake-v1")
    mdp = TabularMDP.from_env(env)
    _, policy, _ = value_iteration(mdp, gamma=0.99, tol=1e-8, iterations=10_000)
    wins = 0
    episodes = 1_500
    for seed in range(episodes):
        state, _ = env.reset(seed=seed)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            done = terminated or truncated
        wins += int(reward > 0)
    simulated = mdp.simulate(policy, 20_000, np.random.default_rng(0))
    assert abs(wins / episodes - (simulated > 0).mean()) < 0.04


def test_policy_iteration_on_taxi_and_replay(tmp_path: Path) -> None:
    train_dir = tmp_path / "job1"
    result = train_policy_iteration(ToolContext(
        params=PlanningParams(env="Taxi-v4", eval_episodes=2_000), work_dir=train_dir))
    assert result.metrics["mean_reward"] > 7.0  # optimal Taxi averages about 7.9
    replay = play(ToolContext(params=PlayParams(job="job1"), work_dir=tmp_path / "job2"))
    assert is_gif(replay.images[0][1])
    assert replay.metrics["mean_reward"] > 0


def test_qlearning_learns_taxi(tmp_path: Path) -> None:
    result = train_td(ToolContext(
        params=TDParams(env="Taxi-v4", episodes=2_000, eval_episodes=2_000), work_dir=tmp_path))
    assert result.metrics["mean_reward"] > 5.0
    assert is_png(dict(result.images)["learning_curve.png"])


def test_sarsa_and_expected_sarsa_run(tmp_path: Path) -> None:
    for algorithm in ("sarsa", "expected_sarsa"):
        result = train_td(ToolContext(
            params=TDParams(env="CliffWalking-v1", algorithm=algorithm, episodes=300,
                            eval_episodes=100),
            work_dir=tmp_path / algorithm))
        # A learned greedy path reaches the goal (random walking falls off the cliff: -100s).
        assert result.metrics["mean_reward"] >= -30, algorithm


def test_play_refuses_paths(tmp_path: Path) -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        PlayParams(job="../../etc")
    with pytest.raises(pydantic.ValidationError):
        PlayParams(job="/tmp/x")
