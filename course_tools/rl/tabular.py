"""Tabular RL on gymnasium's toy-text MDPs: value iteration, policy iteration and TD control
(Q-learning, SARSA, expected SARSA).

Planning tools read the model from ``env.unwrapped.P``; the TD learners only interact with the
env. Every tool evaluates its greedy policy on many episodes at once (``TabularMDP.simulate``),
draws a learning curve and records a GIF of one episode.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import learning_curve_png
from course_tools.rl.common import (
    TabularEnv,
    TabularMDP,
    episode_images,
    make_env,
    play_command,
    save_agent,
    tabular_metrics,
)


class PlanningParams(ToolParams):
    """Parameters of value and policy iteration."""

    env: TabularEnv = Field(default="FrozenLake-v1", description="toy-text environment")
    is_slippery: bool = Field(default=True, description="FrozenLake only: stochastic moves")
    gamma: float = Field(default=0.99, ge=0.0, le=0.9999, description="discount factor")
    tol: float = Field(default=1e-8, gt=0.0, le=1.0, description="stop when values change less")
    iterations: int = Field(default=10_000, ge=1, le=100_000,
                            description="max sweeps / improvements")
    eval_episodes: int = Field(default=10_000, ge=1, le=1_000_000,
                               description="evaluation episodes")


class TDParams(ToolParams):
    """Parameters of the TD control learners."""

    env: TabularEnv = Field(default="Taxi-v4", description="toy-text environment")
    is_slippery: bool = Field(default=True, description="FrozenLake only: stochastic moves")
    algorithm: Literal["qlearning", "sarsa", "expected_sarsa"] = Field(default=
        "qlearning", description="TD target"
    )
    episodes: int = Field(default=5_000, ge=1, le=200_000, description="training episodes")
    alpha: float = Field(default=0.5, gt=0.0, le=1.0, description="learning rate")
    gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="discount factor")
    epsilon: float = Field(default=0.25, ge=0.0, le=1.0, description="initial exploration rate")
    epsilon_decay: float = Field(default=0.999, gt=0.0, le=1.0, description="per-episode decay")
    eval_episodes: int = Field(default=10_000, ge=1, le=1_000_000,
                               description="evaluation episodes")


def value_iteration(
    mdp: TabularMDP, gamma: float, tol: float, iterations: int,
    ctx: ToolContext | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Bellman optimality sweeps until the largest value change is below ``tol``.

    Returns (values, greedy policy, max change per sweep).
    """
    values = np.zeros(mdp.n_states)
    deltas: list[float] = []
    for i in range(iterations):
        new_values = mdp.q_values(values, gamma).max(axis=1)
        delta = float(np.abs(new_values - values).max())
        values = new_values
        deltas.append(delta)
        if ctx is not None and i % 50 == 0:
            ctx.report(min(0.8, 0.8 * i / iterations), f"sweep {i}, delta {delta:.2e}")
        if delta < tol:
            break
    policy = mdp.q_values(values, gamma).argmax(axis=1)
    return values, policy, deltas


def policy_evaluation(mdp: TabularMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Exact V^pi by solving (I - gamma P_pi) V = r_pi."""
    rows = np.arange(mdp.n_states)
    p_pi = mdp.trans_live[rows, policy]
    r_pi = mdp.reward[rows, policy]
    return np.linalg.solve(np.eye(mdp.n_states) - gamma * p_pi, r_pi)


def policy_iteration(
    mdp: TabularMDP, gamma: float, iterations: int, ctx: ToolContext | None = None
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Alternate exact evaluation and greedy improvement until the policy is stable.

    Returns (values, policy, mean value of each successive policy).
    """
    policy = np.zeros(mdp.n_states, dtype=np.int64)
    history: list[float] = []
    values = np.zeros(mdp.n_states)
    for i in range(iterations):
        values = policy_evaluation(mdp, policy, gamma)
        history.append(float(values.mean()))
        q = mdp.q_values(values, gamma)
        # Keep the current action on ties, or the loop can cycle between equally good policies.
        current = q[np.arange(mdp.n_states), policy]
        improved = np.where(q.max(axis=1) > current + 1e-10, q.argmax(axis=1), policy)
        if ctx is not None:
            ctx.report(min(0.8, 0.1 * (i + 1)), f"improvement {i + 1}")
        if np.array_equal(improved, policy):
            break
        policy = improved
    return values, policy, history


def _finish(
    ctx: ToolContext, tool: str, env_id: str, is_slippery: bool, policy: np.ndarray,
    mdp: TabularMDP, eval_episodes: int, curve: bytes, extra: dict[str, float], summary: str,
) -> ToolResult:
    """Evaluate a greedy tabular policy, save it, record a GIF, and build the result."""
    rng = np.random.default_rng(ctx.params.seed)
    ctx.report(0.85, f"evaluating on {eval_episodes} episodes")
    metrics = {**tabular_metrics(env_id, mdp.simulate(policy, eval_episodes, rng)), **extra}
    save_agent(ctx.work_dir, {"tool": tool, "kind": "tabular", "env": env_id,
                              "is_slippery": is_slippery, "metrics": metrics},
               {"policy": policy.astype(np.int64)})
    ctx.report(0.95, "recording an episode")
    images, note = episode_images(env_id, lambda s: int(policy[int(s)]), ctx.params.seed,
                                  curve, is_slippery)
    ctx.report(1.0, "done")
    headline = (f"success rate {metrics['success_rate']:.3f}" if "success_rate" in metrics
                else f"mean return {metrics['mean_reward']:.2f}")
    text = f"{summary} Greedy policy over {eval_episodes} episodes: {headline}.{note}"
    return ToolResult(
        text=text, metrics=metrics,
        images=images,
        artifacts={"agent": ctx.work_dir / "agent.json"},
        follow_up=f"/play {tool} <job id>",
    )


def train_value_iteration(ctx: ToolContext[PlanningParams]) -> ToolResult:
    """Value iteration on the env's known model."""
    p = ctx.params
    mdp = TabularMDP.from_env(make_env(p.env, is_slippery=p.is_slippery))
    start = time.perf_counter()
    values, policy, deltas = value_iteration(mdp, p.gamma, p.tol, p.iterations, ctx)
    seconds = time.perf_counter() - start
    curve = learning_curve_png(
        {"max |V_new - V|": (list(range(1, len(deltas) + 1)),
                             np.log10(np.maximum(deltas, 1e-16)))},
        title=f"Value iteration on {p.env}", xlabel="sweep", ylabel="log10 max value change",
    )
    extra = {"sweeps": float(len(deltas)), "v_start": float(values @ mdp.initial),
             "plan_seconds": seconds}
    summary = f"Value iteration on {p.env} converged in {len(deltas)} sweeps ({seconds:.2f} s)."
    return _finish(ctx, "rl.value_iteration", p.env, p.is_slippery, policy, mdp,
                   p.eval_episodes, curve, extra, summary)


def train_policy_iteration(ctx: ToolContext[PlanningParams]) -> ToolResult:
    """Policy iteration on the env's known model."""
    p = ctx.params
    mdp = TabularMDP.from_env(make_env(p.env, is_slippery=p.is_slippery))
    start = time.perf_counter()
    values, policy, history = policy_iteration(mdp, p.gamma, p.iterations, ctx)
    seconds = time.perf_counter() - start
    curve = learning_curve_png(
        {"mean V^pi": (list(range(1, len(history) + 1)), history)},
        title=f"Policy iteration on {p.env}", xlabel="improvement step", ylabel="mean state value",
    )
    extra = {"improvements": float(len(history)), "v_start": float(values @ mdp.initial),
             "plan_seconds": seconds}
    summary = (f"Policy iteration on {p.env} was stable after {len(history)} evaluations "
               f"({seconds:.2f} s).")
    return _finish(ctx, "rl.policy_iteration", p.env, p.is_slippery, policy, mdp,
                   p.eval_episodes, curve, extra, summary)


def td_control(ctx: ToolContext[TDParams]) -> tuple[np.ndarray, list[float]]:
    """Epsilon-greedy TD control on the real env; returns (Q table, training returns)."""
    p = ctx.params
    env = make_env(p.env, is_slippery=p.is_slippery)
    rng = np.random.default_rng(p.seed)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    q = np.zeros((n_states, n_actions))
    epsilon = p.epsilon
    returns: list[float] = []

    def choose(state: int) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(n_actions))
        row = q[state]
        return int(rng.choice(np.flatnonzero(row == row.max())))

    report_every = max(1, p.episodes // 100)
    for episode in range(p.episodes):
        if episode % report_every == 0:
            ctx.report(0.8 * episode / p.episodes, f"episode {episode}")
        state, _ = env.reset(seed=p.seed + episode)
        action = choose(state)
        total, done = 0.0, False
        while not done:
            nxt, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = bool(terminated or truncated)
            next_action = choose(nxt)
            if terminated:
                bootstrap = 0.0
            elif p.algorithm == "qlearning":
                bootstrap = q[nxt].max()
            elif p.algorithm == "sarsa":
                bootstrap = q[nxt, next_action]
            else:
                greedy = q[nxt] == q[nxt].max()
                probs = np.full(n_actions, epsilon / n_actions)
                probs += (1.0 - epsilon) * greedy / greedy.sum()
                bootstrap = float(probs @ q[nxt])
            q[state, action] += p.alpha * (reward + p.gamma * bootstrap - q[state, action])
            state, action = nxt, next_action
        returns.append(total)
        epsilon *= p.epsilon_decay
    env.close()
    return q, returns


def train_td(ctx: ToolContext[TDParams]) -> ToolResult:
    """Q-learning / SARSA / expected SARSA with a decaying epsilon-greedy policy."""
    p = ctx.params
    start = time.perf_counter()
    q, returns = td_control(ctx)
    seconds = time.perf_counter() - start
    policy = q.argmax(axis=1)
    mdp = TabularMDP.from_env(make_env(p.env, is_slippery=p.is_slippery))
    window = max(1, min(100, len(returns) // 10))
    curve = learning_curve_png(
        {p.algorithm: (list(range(1, len(returns) + 1)), returns)},
        title=f"{p.algorithm} on {p.env}", smooth_window=window,
    )
    extra = {"train_seconds": seconds,
             "train_mean_reward_last100": float(np.mean(returns[-100:]))}
    summary = f"Trained {p.algorithm} on {p.env} for {p.episodes} episodes ({seconds:.1f} s)."
    return _finish(ctx, "rl.qlearning", p.env, p.is_slippery, policy, mdp, p.eval_episodes,
                   curve, extra, summary)


VALUE_ITERATION = register(ToolSpec(
    name="rl.value_iteration",
    course="rl",
    summary="Value iteration on FrozenLake/Taxi/CliffWalking using the env's known model.",
    commands=(
        ToolCommand("train", train_value_iteration, PlanningParams,
                    "plan the optimal policy by value iteration and evaluate it", heavy=False),
        play_command("rl.value_iteration"),
    ),
    examples=(
        "solve frozen lake with value iteration",
        "value iteration on frozenlake",
        "compute optimal values with value iteration",
        "solve the taxi mdp by value iteration",
        "run value iteration on taxi",
        "what is the optimal policy for FrozenLake",
    ),
    headline_metric="mean_reward",
))

POLICY_ITERATION = register(ToolSpec(
    name="rl.policy_iteration",
    course="rl",
    summary="Policy iteration (exact evaluation + greedy improvement) on toy-text MDPs.",
    commands=(
        ToolCommand("train", train_policy_iteration, PlanningParams,
                    "find the optimal policy by policy iteration and evaluate it", heavy=False),
        play_command("rl.policy_iteration"),
    ),
    examples=(
        "run policy iteration on frozen lake",
        "policy iteration on frozenlake",
        "solve taxi with policy iteration",
        "run policy evaluation and improvement",
        "policy iteration for the taxi environment",
    ),
    headline_metric="mean_reward",
))

QLEARNING = register(ToolSpec(
    name="rl.qlearning",
    course="rl",
    summary="Tabular Q-learning, SARSA or expected SARSA (algorithm=...) on toy-text envs.",
    commands=(
        ToolCommand("train", train_td, TDParams,
                    "learn a Q table by TD control and evaluate its greedy policy"),
        play_command("rl.qlearning"),
    ),
    examples=(
        "train a q-learning agent on taxi",
        "tabular q learning on frozen lake",
        "run q-learning on taxi for 5000 episodes",
        "train sarsa on cliffwalking",
        "run sarsa on frozen lake",
        "expected sarsa on cliff walking",
    ),
    headline_metric="mean_reward",
))

SPECS: list[ToolSpec] = [VALUE_ITERATION, POLICY_ITERATION, QLEARNING]
