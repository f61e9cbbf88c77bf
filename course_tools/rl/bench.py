"""Time-to-solve benchmark on CartPole-v1: our agents against stable-baselines3 PPO at its
RL-Zoo settings, interleaved seed by seed in one process on the same cores.

"Solved" means a greedy evaluation over 100 episodes averages >= 475. Both sides evaluate the same
way (``evaluate_cartpole``, cut short once 475 is out of reach) and stop at the first pass; the
time counts from building the agent to that pass, evaluations included (and also reported
without them). stable-baselines3 is a benchmark-only dependency (``pip install amlbot[bench]``).

    python -m course_tools.rl.bench --seeds 5 --agents cem --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from course_tools.base import ToolContext
from course_tools.rl.common import CARTPOLE, CARTPOLE_SOLVED, evaluate_cartpole

SB3_TIMESTEPS = 100_000


def run_ours(agent: str, seed: int) -> dict[str, Any]:
    """Train one of our agents with its defaults; time to solve as the tool measured it."""
    from course_tools.rl import cem, deep

    funcs: dict[str, tuple[Any, Any]] = {
        "cem": (cem.train_cem, cem.CEMParams),
        "dqn": (deep.train_dqn, deep.DQNParams),
        "reinforce": (deep.train_reinforce, deep.ReinforceParams),
        "a2c": (deep.train_a2c, deep.A2CParams),
    }
    func, params = funcs[agent]
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = func(ToolContext(params=params(seed=seed), work_dir=Path(work)))
        call_seconds = time.perf_counter() - start
    m = result.metrics
    return {"agent": f"amlbot rl.{agent}", "seed": seed, "solved": bool(m["solved"]),
            "solve_seconds": m.get("solve_seconds"), "solve_steps": m.get("solve_steps"),
            "final_mean_reward": m["mean_reward"], "call_seconds": call_seconds}


def run_sb3_ppo(seed: int, eval_every_rollouts: int = 2) -> dict[str, Any]:
    """SB3 PPO with the RL-Zoo CartPole-v1 hyperparameters, stopped when solved."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(initial: float) -> Any:
        return lambda progress_remaining: progress_remaining * initial

    class StopWhenSolved(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_seconds = 0.0
            self.evals = 0
            self.solved_steps: int | None = None

        def _on_step(self) -> bool:
            # Evaluate at the first step of every ``eval_every_rollouts``-th rollout, i.e. the
            # policy right after an update; returning False ends learn() at once.
            if self.n_calls % (32 * eval_every_rollouts) != 1:
                return True
            t0 = time.perf_counter()
            policy = self.model.policy
            score, _ = evaluate_cartpole(
                lambda obs: policy.predict(obs, deterministic=True)[0], episodes=100,
                seed=10_000 + seed * 1_000 + self.evals, target=CARTPOLE_SOLVED)
            self.evals += 1
            self.eval_seconds += time.perf_counter() - t0
            if score >= CARTPOLE_SOLVED:
                self.solved_steps = self.num_timesteps
                return False
            return True

    start = time.perf_counter()
    env = make_vec_env(CARTPOLE, n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                n_epochs=20, ent_coef=0.0, learning_rate=linear(0.001),
                clip_range=linear(0.2), seed=seed, verbose=0, device="cpu")
    callback = StopWhenSolved()
    model.learn(total_timesteps=SB3_TIMESTEPS, callback=callback)
    seconds = time.perf_counter() - start
    env.close()
    solved = callback.solved_steps is not None
    final, _ = evaluate_cartpole(lambda obs: model.policy.predict(obs, deterministic=True)[0],
                                 episodes=100, seed=2**30 + seed)
    return {"agent": "sb3 PPO (zoo)", "seed": seed, "solved": solved,
            "solve_seconds": seconds if solved else None,
            "solve_steps": callback.solved_steps, "final_mean_reward": final,
            "call_seconds": seconds, "eval_seconds": callback.eval_seconds}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median time to solve per agent (an unsolved run counts as infinitely slow)."""
    out: dict[str, dict[str, Any]] = {}
    for agent in sorted({r["agent"] for r in rows}):
        runs = [r for r in rows if r["agent"] == agent]
        times = [r["solve_seconds"] if r["solved"] else float("inf") for r in runs]
        out[agent] = {"runs": len(runs), "solved": sum(r["solved"] for r in runs),
                      "median_solve_seconds": statistics.median(times),
                      "min": min(times), "max": max(times),
                      "median_final_mean_reward": statistics.median(
                          r["final_mean_reward"] for r in runs)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--agents", default="cem", help="comma list: cem,dqn,reinforce,a2c")
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # same for both sides; SB3 is faster this way on tiny MLPs
    rows: list[dict[str, Any]] = []
    agents = [a for a in args.agents.split(",") if a]
    for seed in range(args.seeds):
        runs: list[Any] = [lambda a=a, s=seed: run_ours(a, s) for a in agents]
        if not args.no_sb3:
            runs.append(lambda s=seed: run_sb3_ppo(s))
        if seed % 2:
            runs.reverse()  # alternate who goes first, so load drift hits both sides alike
        for run in runs:
            row = run()
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = summarise(rows)
    print(json.dumps(summary, indent=2))
    names = list(summary)
    if "sb3 PPO (zoo)" in summary:
        base = summary["sb3 PPO (zoo)"]["median_solve_seconds"]
        for name in names:
            ratio = summary[name]["median_solve_seconds"] / base if np.isfinite(base) else None
            print(f"{name}: median {summary[name]['median_solve_seconds']:.2f} s"
                  + (f" = {ratio:.3f} x SB3" if ratio is not None else ""))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
