"""Shared pieces of the reinforcement-learning tools: env names, saved agents, evaluation, GIFs.

Agents are saved in the job's work dir as ``agent.json`` (what it is) plus ``agent.npz`` (numpy
arrays, loaded with ``allow_pickle=False``) or ``agent.pt`` (a torch state dict, loaded with
``weights_only=True``), so replaying an agent never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult
from course_tools.plots import frames_to_gif

TabularEnv = Literal["FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4", "CliffWalking-v1"]
CARTPOLE = "CartPole-v1"
CARTPOLE_SOLVED = 475.0
AGENT_META = "agent.json"
DEFAULT_EPISODE_LIMIT = 200

# pygame (gymnasium's renderer) must never try to open a display or an audio device.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


class PlayParams(ToolParams):
    """Replay a trained agent from an earlier job."""

    job: str = Field(default=
        ...,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the training job's id",
    )
    episodes: int = Field(default=1, ge=1, le=5, description="episodes to record")


def make_env(env_id: str, *, render: bool = False, is_slippery: bool = True) -> Any:
    """A gymnasium env by name; FrozenLake takes ``is_slippery``."""
    import gymnasium as gym

    kwargs: dict[str, Any] = {}
    if env_id.startswith("FrozenLake"):
        kwargs["is_slippery"] = is_slippery
    if render:
        kwargs["render_mode"] = "rgb_array"
    if gym.spec(env_id).max_episode_steps is None:
        # CliffWalking has no time limit; a greedy policy that walks into a wall would loop.
        kwargs["max_episode_steps"] = DEFAULT_EPISODE_LIMIT
    return gym.make(env_id, **kwargs)


# ---------------------------------------------------------------- tabular MDPs


@dataclass
class TabularMDP:
    """A finite MDP read from ``env.unwrapped.P``, as dense arrays.

    ``outcomes_*[s, a, k]`` list the k-th possible transition (padded with probability 0);
    ``trans_live[s, a, s']`` is the probability of reaching s' without the episode ending, which
    is what the Bellman backup discounts.
    """

    n_states: int
    n_actions: int
    reward: np.ndarray  # [S, A] expected immediate reward
    trans_live: np.ndarray  # [S, A, S]
    outcomes_prob: np.ndarray  # [S, A, K]
    outcomes_next: np.ndarray  # [S, A, K]
    outcomes_reward: np.ndarray  # [S, A, K]
    outcomes_done: np.ndarray  # [S, A, K]
    initial: np.ndarray  # [S] start-state distribution
    max_steps: int

    @classmethod
    def from_env(cls, env: Any) -> TabularMDP:
        unwrapped = env.unwrapped
        table = unwrapped.P
        n_states = int(unwrapped.observation_space.n)
        n_actions = int(unwrapped.action_space.n)
        k_max = max(len(table[s][a]) for s in range(n_states) for a in range(n_actions))
        reward = np.zeros((n_states, n_actions))
        trans_live = np.zeros((n_states, n_actions, n_states))
        prob = np.zeros((n_states, n_actions, k_max))
        nxt = np.zeros((n_states, n_actions, k_max), dtype=np.int64)
        rew = np.zeros((n_states, n_actions, k_max))
        done = np.zeros((n_states, n_actions, k_max), dtype=bool)
        for s in range(n_states):
            for a in range(n_actions):
                for k, (p, s2, r, d) in enumerate(table[s][a]):
                    reward[s, a] += p * r
                    if not d:
                        trans_live[s, a, s2] += p
                    prob[s, a, k], nxt[s, a, k], rew[s, a, k], done[s, a, k] = p, s2, r, d
        initial = np.asarray(
            getattr(unwrapped, "initial_state_distrib", np.eye(n_states)[0]), dtype=float
        )
        spec = getattr(env, "spec", None)
        max_steps = int(getattr(spec, "max_episode_steps", None) or DEFAULT_EPISODE_LIMIT)
        return cls(n_states, n_actions, reward, trans_live, prob, nxt, rew, done,
                   initial / initial.sum(), max_steps)

    def q_values(self, values: np.ndarray, gamma: float) -> np.ndarray:
        """One Bellman backup: Q(s, a) = r(s, a) + gamma * sum_s' P_live(s' | s, a) V(s')."""
        return self.reward + gamma * self.trans_live @ values

    def simulate(
        self, policy: np.ndarray, episodes: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Returns of ``episodes`` episodes under a deterministic policy, all run at once."""
        states = rng.choice(self.n_states, size=episodes, p=self.initial)
        returns = np.zeros(episodes)
        alive = np.ones(episodes, dtype=bool)
        cum = np.cumsum(self.outcomes_prob, axis=2)
        for _ in range(self.max_steps):
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                break
            s = states[idx]
            a = policy[s]
            u = rng.random(idx.size)[:, None] * cum[s, a, -1][:, None]
            k = np.minimum((u >= cum[s, a]).sum(axis=1), cum.shape[2] - 1)
            returns[idx] += self.outcomes_reward[s, a, k]
            states[idx] = self.outcomes_next[s, a, k]
            alive[idx[self.outcomes_done[s, a, k]]] = False
        return returns


def tabular_metrics(env_id: str, returns: np.ndarray) -> dict[str, float]:
    """Mean return, and success rate where reaching the goal is the only reward (FrozenLake)."""
    metrics = {"mean_reward": float(returns.mean()), "std_reward": float(returns.std())}
    if env_id.startswith("FrozenLake"):
        metrics["success_rate"] = float((returns > 0).mean())
    return metrics


# ---------------------------------------------------------------- CartPole evaluation


ActFn = Callable[[np.ndarray], np.ndarray]


def evaluate_cartpole(
    act: ActFn, episodes: int = 100, seed: int = 0, target: float | None = None
) -> tuple[float, np.ndarray]:
    """Mean return of ``episodes`` CartPole-v1 episodes run side by side in gymnasium's own
    vectorised CartPole, under a batched greedy policy ``act(obs[N, 4]) -> actions[N]``.

    With ``target``, it stops as soon as the mean can no longer reach it (every alive episode
    scoring the maximum from now on would not be enough) and then returns that upper bound,
    which is below the target; so a failing evaluation costs little and a passing one is exact.
    """
    import gymnasium as gym

    envs = gym.make_vec(CARTPOLE, num_envs=episodes, vectorization_mode="vector_entry_point")
    try:
        max_steps = int(envs.unwrapped.max_episode_steps)  # type: ignore[attr-defined]
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        alive = np.ones(episodes, dtype=bool)
        for step in range(max_steps):
            actions = np.asarray(act(obs), dtype=np.int64)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            returns += reward * alive
            alive &= ~(terminated | truncated)
            if not alive.any():
                break
            if target is not None:
                best = (returns.sum() + alive.sum() * (max_steps - step - 1)) / episodes
                if best < target:
                    return float(best), returns
        return float(returns.mean()), returns
    finally:
        envs.close()


def record_episode_gif(
    env: Any, act_one: Callable[[Any], int], seed: int, max_frames: int = 200
) -> tuple[bytes, float]:
    """Play one episode in an ``rgb_array`` env and return (GIF bytes, episode return)."""
    spec = getattr(env, "spec", None)
    limit = int(getattr(spec, "max_episode_steps", None) or max_frames)
    stride = max(1, -(-limit // max_frames))  # render only the frames the GIF keeps
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    total = 0.0
    done = False
    step = 0
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act_one(obs))
        total += float(reward)
        done = bool(terminated or truncated)
        step += 1
        if done or step % stride == 0:
            frames.append(env.render())
    return frames_to_gif(frames, max_frames=max_frames, fps=max(1, 50 // stride)), total


def episode_images(
    env_id: str, act_one: Callable[[Any], int], seed: int, curve: bytes,
    is_slippery: bool = True,
) -> tuple[list[tuple[str, bytes]], str]:
    """The learning curve plus a GIF of one greedy episode; without gymnasium's renderer
    (pygame, the ``rl`` extra) the GIF is left out and the note says why."""
    from gymnasium.error import DependencyNotInstalled

    env = make_env(env_id, render=True, is_slippery=is_slippery)
    try:
        gif, _ = record_episode_gif(env, act_one, seed=seed)
    except DependencyNotInstalled as exc:
        return [("learning_curve.png", curve)], f" (no GIF: {exc})"
    finally:
        env.close()
    return [("learning_curve.png", curve), ("episode.gif", gif)], ""


# ---------------------------------------------------------------- saved agents


def save_agent(work_dir: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``agent.json`` and ``agent.npz`` into the work dir; returns the json path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    np.savez(work_dir / "agent.npz", **arrays)  # type: ignore[arg-type]
    path = work_dir / AGENT_META
    path.write_text(json.dumps({**meta, "format": "npz", "saved": time.time()}, indent=2))
    return path


def save_torch_agent(work_dir: Path, meta: dict[str, Any], state_dict: dict[str, Any]) -> Path:
    """Write ``agent.json`` and a torch state dict ``agent.pt`` into the work dir."""
    import torch

    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, work_dir / "agent.pt")
    path = work_dir / AGENT_META
    path.write_text(json.dumps({**meta, "format": "pt", "saved": time.time()}, indent=2))
    return path


def resolve_job_dir(job: str, ctx: ToolContext) -> Path:
    """Find an earlier job's work dir from its id (through the bot's ``find_job``, which
    checks that the job is this user's; else a sibling of this job's dir).

    Only job ids are accepted, never paths: a chat user must not point us at other files.
    """
    if not job or not all(c.isalnum() or c in "_-" for c in job):
        raise ValueError(f"{job!r} is not a job id")
    candidate = ctx.find_job(job) if ctx.find_job is not None else ctx.work_dir.parent / job
    if (candidate / AGENT_META).is_file():
        return candidate
    raise ValueError(f"no saved agent for job {job!r} (looked for {AGENT_META} in its work dir)")


def mlp_forward(arrays: dict[str, np.ndarray], obs: np.ndarray) -> np.ndarray:
    """A tanh/relu MLP in numpy from arrays ``w0, b0, w1, b1, ...`` (activation in ``act``)."""
    n_layers = sum(1 for key in arrays if key.startswith("w"))
    relu = str(arrays.get("act", np.array("tanh"))) == "relu"
    h = obs.astype(np.float64)
    for i in range(n_layers):
        h = h @ arrays[f"w{i}"] + arrays[f"b{i}"]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0) if relu else np.tanh(h)
    return h


def torch_to_arrays(state_dict: dict[str, Any], activation: str) -> dict[str, np.ndarray]:
    """A ``nn.Sequential`` of Linear layers' state dict as ``w{i}``/``b{i}`` numpy arrays."""
    weights = [k for k in state_dict if k.endswith(".weight")]
    arrays: dict[str, np.ndarray] = {"act": np.array(activation)}
    for i, key in enumerate(weights):
        arrays[f"w{i}"] = state_dict[key].detach().cpu().numpy().T.astype(np.float64)
        arrays[f"b{i}"] = state_dict[key[: -len("weight")] + "bias"].detach().cpu().numpy()
    return arrays


def load_policy(job_dir: Path) -> tuple[dict[str, Any], Callable[[Any], int]]:
    """Load a saved agent as (meta, greedy single-observation policy)."""
    meta = json.loads((job_dir / AGENT_META).read_text())
    if meta["format"] == "npz":
        with np.load(job_dir / "agent.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    else:
        import torch

        state = torch.load(job_dir / "agent.pt", weights_only=True, map_location="cpu")
        arrays = torch_to_arrays(state, meta.get("activation", "tanh"))
    if meta["kind"] == "tabular":
        policy = arrays["policy"]
        return meta, lambda obs: int(policy[int(obs)])
    return meta, lambda obs: int(np.argmax(mlp_forward(arrays, np.asarray(obs)[None])[0]))


def play(ctx: ToolContext[PlayParams]) -> ToolResult:
    """Replay a saved agent from a training job's work dir, as a GIF per episode."""
    params = ctx.params
    job_dir = resolve_job_dir(params.job, ctx)
    meta, act_one = load_policy(job_dir)
    env = make_env(meta["env"], render=True, is_slippery=meta.get("is_slippery", True))
    images: list[tuple[str, bytes]] = []
    returns: list[float] = []
    try:
        for episode in range(params.episodes):
            ctx.report(episode / params.episodes, f"episode {episode + 1}")
            gif, total = record_episode_gif(env, act_one, seed=params.seed + episode)
            images.append((f"episode_{episode + 1}.gif", gif))
            returns.append(total)
    finally:
        env.close()
    ctx.report(1.0, "done")
    mean = float(np.mean(returns))
    text = (f"Replayed {meta['tool']} on {meta['env']} from job {params.job}: "
            f"{params.episodes} episode(s), mean return {mean:.1f}.")
    return ToolResult(text=text, metrics={"mean_reward": mean}, images=images)


def play_command(agent: str) -> ToolCommand[PlayParams]:
    """The ``play`` command every RL tool has: ``/play rl.dqn JOB_ID``."""
    return ToolCommand("play", play, PlayParams, f"replay a trained {agent} agent as a GIF",
                       heavy=False, positional=("job",))
