"""Cross-entropy method on CartPole-v1: sample policy parameters from a Gaussian, keep the
elite fraction by episode return, refit the Gaussian to them, repeat.

The whole population plays at once in gymnasium's numpy-vectorised CartPole (one env per
candidate and episode), and the policy is a numpy linear map or small MLP, so a generation costs
a few hundred vectorised steps. Training stops as soon as the mean policy scores >= 475 over 100
evaluation episodes ("solved"); the evaluation only runs when the elites look good enough.
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
    CARTPOLE,
    CARTPOLE_SOLVED,
    episode_images,
    evaluate_cartpole,
    mlp_forward,
    play_command,
    save_agent,
)


class CEMParams(ToolParams):
    """Parameters of the cross-entropy method."""

    env: Literal["CartPole-v1"] = Field(default="CartPole-v1", description="environment")
    policy: Literal["linear", "mlp"] = Field(default="linear", description="policy family")
    hidden: int = Field(default=16, ge=1, le=256, description="hidden units (mlp policy)")
    population: int = Field(default=50, ge=4, le=2_000, description="candidates per generation")
    elite_frac: float = Field(default=0.2, gt=0.0, le=0.5, description="fraction kept as elites")
    episodes_per_candidate: int = Field(default=1, ge=1, le=20,
                                        description="episodes per candidate")
    init_std: float = Field(default=1.0, gt=0.0, le=10.0, description="initial sampling std")
    extra_noise: float = Field(default=0.1, ge=0.0, le=5.0,
                               description="std added after each refit")
    steps: int = Field(default=2_000_000, ge=500, le=50_000_000, description="env-step budget")
    stop_when_solved: bool = Field(default=True, description="stop once eval mean >= 475")
    eval_episodes: int = Field(default=100, ge=1, le=10_000,
                               description="final evaluation episodes")


def layer_shapes(
    policy: str, hidden: int, n_obs: int = 4, n_act: int = 2
) -> list[tuple[int, int]]:
    """Weight shapes of the policy's layers."""
    if policy == "linear":
        return [(n_obs, n_act)]
    return [(n_obs, hidden), (hidden, n_act)]


def unflatten(theta: np.ndarray, shapes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """One flat parameter vector as ``w{i}``/``b{i}`` arrays (for ``mlp_forward``)."""
    arrays: dict[str, np.ndarray] = {"act": np.array("tanh")}
    offset = 0
    for i, (n_in, n_out) in enumerate(shapes):
        arrays[f"w{i}"] = theta[offset: offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        arrays[f"b{i}"] = theta[offset: offset + n_out]
        offset += n_out
    return arrays


def batched_actions(
    thetas: np.ndarray, obs: np.ndarray, shapes: list[tuple[int, int]]
) -> np.ndarray:
    """Greedy actions when env ``i`` is driven by its own parameters ``thetas[i]``."""
    h = obs
    offset = 0
    for i, (n_in, n_out) in enumerate(shapes):
        w = thetas[:, offset: offset + n_in * n_out].reshape(-1, n_in, n_out)
        offset += n_in * n_out
        b = thetas[:, offset: offset + n_out]
        offset += n_out
        h = np.einsum("ni,nio->no", h, w) + b
        if i < len(shapes) - 1:
            h = np.tanh(h)
    return np.asarray(h.argmax(axis=1))


def run_population(
    envs: object, thetas: np.ndarray, shapes: list[tuple[int, int]], seed: int
) -> tuple[np.ndarray, int]:
    """One episode per env with env ``i`` driven by ``thetas[i]``; (returns, env steps)."""
    obs, _ = envs.reset(seed=seed)  # type: ignore[attr-defined]
    n = thetas.shape[0]
    returns = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    steps = 0
    while alive.any():
        actions = batched_actions(thetas, obs, shapes)
        obs, reward, terminated, truncated, _ = envs.step(actions)  # type: ignore[attr-defined]
        steps += int(alive.sum())
        returns += reward * alive
        alive &= ~(terminated | truncated)
    return returns, steps


def train_cem(ctx: ToolContext[CEMParams]) -> ToolResult:
    """Train a CartPole policy with CEM, stop when solved, evaluate, save, record a GIF."""
    import gymnasium as gym

    p = ctx.params
    start = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    shapes = layer_shapes(p.policy, p.hidden)
    dim = sum(n_in * n_out + n_out for n_in, n_out in shapes)
    mean, std = np.zeros(dim), np.full(dim, p.init_std)
    n_elite = max(2, int(round(p.elite_frac * p.population)))
    n_envs = p.population * p.episodes_per_candidate
    envs = gym.make_vec(CARTPOLE, num_envs=n_envs, vectorization_mode="vector_entry_point")
    gens: list[int] = []
    gen_mean: list[float] = []
    gen_elite: list[float] = []
    evals: list[tuple[int, float]] = []
    steps_done, generation = 0, 0
    solved_at: tuple[float, int] | None = None
    try:
        while steps_done < p.steps:
            ctx.report(min(0.9, 0.9 * steps_done / p.steps),
                       f"generation {generation}, best elite mean "
                       f"{max(gen_elite, default=0.0):.0f}")
            thetas = mean + std * rng.standard_normal((p.population, dim))
            returns, steps = run_population(
                envs, np.repeat(thetas, p.episodes_per_candidate, axis=0), shapes,
                seed=p.seed * 100_003 + generation,
            )
            steps_done += steps
            scores = returns.reshape(p.population, p.episodes_per_candidate).mean(axis=1)
            elite = np.argsort(scores)[-n_elite:]
            mean = thetas[elite].mean(axis=0)
            std = thetas[elite].std(axis=0) + p.extra_noise
            generation += 1
            gens.append(steps_done)
            gen_mean.append(float(scores.mean()))
            gen_elite.append(float(scores[elite].mean()))
            if gen_elite[-1] >= CARTPOLE_SOLVED:
                arrays = unflatten(mean, shapes)
                score, _ = evaluate_cartpole(
                    lambda obs, a=arrays: mlp_forward(a, obs).argmax(axis=1),  # type: ignore[misc]
                    episodes=100, seed=10_000 + p.seed * 1_000 + generation,
                    target=CARTPOLE_SOLVED,
                )
                evals.append((steps_done, score))
                if score >= CARTPOLE_SOLVED and solved_at is None:
                    solved_at = (time.perf_counter() - start, steps_done)
                    if p.stop_when_solved:
                        break
    finally:
        envs.close()
    train_seconds = time.perf_counter() - start
    arrays = unflatten(mean, shapes)
    ctx.report(0.92, f"evaluating on {p.eval_episodes} episodes")
    final, _ = evaluate_cartpole(lambda obs: mlp_forward(arrays, obs).argmax(axis=1),
                                 episodes=p.eval_episodes, seed=2**30 + p.seed)
    metrics = {
        "mean_reward": final,
        "solved": float(solved_at is not None),
        "train_seconds": train_seconds,
        "train_steps": float(steps_done),
        "generations": float(generation),
    }
    if solved_at is not None:
        metrics["solve_seconds"], metrics["solve_steps"] = solved_at[0], float(solved_at[1])
    save_agent(ctx.work_dir, {"tool": "rl.cem", "kind": "mlp", "env": CARTPOLE,
                              "policy": p.policy, "metrics": metrics}, arrays)
    series = {"population mean": (gens, gen_mean), "elite mean": (gens, gen_elite)}
    if evals:
        series["eval (100 episodes, capped)"] = ([s for s, _ in evals], [v for _, v in evals])
    curve = learning_curve_png(series, title=f"CEM ({p.policy} policy) on CartPole-v1",
                               xlabel="env steps", hline=CARTPOLE_SOLVED)
    ctx.report(0.96, "recording an episode")
    images, note = episode_images(
        CARTPOLE, lambda obs: int(mlp_forward(arrays, np.asarray(obs)[None])[0].argmax()),
        p.seed, curve)
    ctx.report(1.0, "done")
    solved_text = (f"solved (eval mean >= 475) after {solved_at[1]} env steps in "
                   f"{solved_at[0]:.1f} s" if solved_at else "not solved within the budget")
    text = (f"CEM with a {p.policy} policy on CartPole-v1: {solved_text}; "
            f"{generation} generations. Final greedy evaluation over {p.eval_episodes} "
            f"episodes: mean reward {final:.1f}.{note}")
    return ToolResult(text=text, metrics=metrics,
                      images=images,
                      artifacts={"agent": ctx.work_dir / "agent.json"},
                      follow_up="/play rl.cem <job id>")


CEM = register(ToolSpec(
    name="rl.cem",
    course="rl",
    summary="Cross-entropy method (linear or MLP policy) on CartPole-v1; stops when solved.",
    commands=(
        ToolCommand("train", train_cem, CEMParams,
                    "train a CartPole policy with the cross-entropy method"),
        play_command("CEM"),
    ),
    examples=(
        "solve cartpole with the cross entropy method",
        "cross-entropy method on cartpole",
        "train cem",
        "evolve a cartpole policy with the cross entropy method",
        "train a CEM agent on CartPole",
    ),
    headline_metric="mean_reward",
))

SPECS: list[ToolSpec] = [CEM]
