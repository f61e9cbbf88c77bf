"""Deep RL on CartPole-v1 with torch: DQN (experience replay + target network), REINFORCE and
advantage actor-critic (A2C).

All three evaluate their greedy policy every ``eval_every`` env steps on 100 episodes in
gymnasium's vectorised CartPole (cut short as soon as 475 is out of reach), keep the best
network seen, and stop once it is solved (eval mean >= 475) unless told otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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
    save_torch_agent,
    torch_to_arrays,
)

if TYPE_CHECKING:
    import torch


class DeepParams(ToolParams):
    """Parameters shared by the torch CartPole agents."""

    env: Literal["CartPole-v1"] = Field(default="CartPole-v1", description="environment")
    steps: int = Field(default=100_000, ge=1_000, le=5_000_000, description="env-step budget")
    hidden: int = Field(default=64, ge=4, le=512, description="hidden units per layer")
    gamma: float = Field(default=0.99, ge=0.0, le=1.0, description="discount factor")
    eval_every: int = Field(default=5_000, ge=500, le=1_000_000,
                            description="env steps between evals")
    stop_when_solved: bool = Field(default=True, description="stop once eval mean >= 475")
    eval_episodes: int = Field(default=100, ge=1, le=10_000,
                               description="final evaluation episodes")


D = TypeVar("D", bound=DeepParams)


class DQNParams(DeepParams):
    """DQN with experience replay and a target network (SB3-zoo-like defaults)."""

    hidden: int = Field(default=256, ge=4, le=512, description="hidden units per layer")
    steps: int = Field(default=60_000, ge=1_000, le=5_000_000, description="env-step budget")
    lr: float = Field(default=2.3e-3, gt=0.0, le=1.0, description="Adam learning rate")
    batch_size: int = Field(default=64, ge=1, le=4_096, description="replay batch size")
    buffer_size: int = Field(default=100_000, ge=100, le=2_000_000, description="replay capacity")
    learning_starts: int = Field(default=1_000, ge=0, le=1_000_000,
                                 description="steps before learning")
    train_freq: int = Field(default=256, ge=1, le=10_000, description="env steps between updates")
    gradient_steps: int = Field(default=128, ge=1, le=10_000,
                                description="updates per train phase")
    target_update: int = Field(default=10, ge=1, le=100_000,
                               description="updates between target syncs")
    exploration_fraction: float = Field(default=0.16, gt=0.0, le=1.0, description="eps decay span")
    final_epsilon: float = Field(default=0.04, ge=0.0, le=1.0,
                                 description="final exploration rate")
    double: bool = Field(default=True, description="double DQN target")


class ReinforceParams(DeepParams):
    """REINFORCE with batches of whole episodes and normalised returns."""

    steps: int = Field(default=300_000, ge=1_000, le=5_000_000, description="env-step budget")
    lr: float = Field(default=5e-3, gt=0.0, le=1.0, description="Adam learning rate")
    batch_episodes: int = Field(default=16, ge=1, le=1_024, description="episodes per update")
    entropy_coef: float = Field(default=0.0, ge=0.0, le=1.0, description="entropy bonus")


class A2CParams(DeepParams):
    """Synchronous advantage actor-critic with n-step returns on parallel envs."""

    steps: int = Field(default=300_000, ge=1_000, le=5_000_000, description="env-step budget")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="Adam learning rate")
    n_envs: int = Field(default=16, ge=1, le=256, description="parallel envs")
    n_steps: int = Field(default=8, ge=1, le=1_000, description="rollout length per update")
    entropy_coef: float = Field(default=0.01, ge=0.0, le=1.0, description="entropy bonus")
    value_coef: float = Field(default=0.5, ge=0.0, le=10.0, description="critic loss weight")


def mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Sequential:
    """Two tanh hidden layers."""
    from torch import nn

    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                         nn.Tanh(), nn.Linear(hidden, n_out))


@dataclass
class SolveTracker:
    """Periodic greedy evaluation, best-network snapshot and time-to-solve bookkeeping."""

    seed: int
    start: float = field(default_factory=time.perf_counter)
    evals: list[tuple[int, float]] = field(default_factory=list)
    best_score: float = -np.inf
    best_state: dict[str, Any] | None = None
    solved_at: tuple[float, int] | None = None

    def evaluate(self, net: torch.nn.Module, steps: int) -> bool:
        """Evaluate ``net``'s greedy policy; returns True when it solved CartPole."""
        arrays = torch_to_arrays(net.state_dict(), "tanh")
        score, _ = evaluate_cartpole(
            lambda obs: mlp_forward(arrays, obs).argmax(axis=1), episodes=100,
            seed=10_000 + self.seed * 1_000 + len(self.evals), target=CARTPOLE_SOLVED)
        self.evals.append((steps, score))
        if score > self.best_score:
            self.best_score = score
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        solved = score >= CARTPOLE_SOLVED
        if solved and self.solved_at is None:
            self.solved_at = (time.perf_counter() - self.start, steps)
        return solved


def _finish(
    ctx: ToolContext[D], tool: str, label: str, net: torch.nn.Module, tracker: SolveTracker,
    episode_steps: list[int], episode_returns: list[float], steps_done: int,
) -> ToolResult:
    """Final evaluation of the best network, save, learning curve and GIF."""
    p = ctx.params
    train_seconds = time.perf_counter() - tracker.start
    if tracker.best_state is not None:
        # The last periodic eval may be worse than an earlier one (DQN is not monotone).
        last_eval = tracker.evals[-1][1] if tracker.evals else -np.inf
        if tracker.best_score > last_eval:
            net.load_state_dict(tracker.best_state)
    state = net.state_dict()
    arrays = torch_to_arrays(state, "tanh")
    ctx.report(0.92, f"evaluating on {p.eval_episodes} episodes")
    final, _ = evaluate_cartpole(lambda obs: mlp_forward(arrays, obs).argmax(axis=1),
                                 episodes=p.eval_episodes, seed=2**30 + p.seed)
    metrics = {"mean_reward": final, "solved": float(tracker.solved_at is not None),
               "train_seconds": train_seconds, "train_steps": float(steps_done),
               "train_episodes": float(len(episode_returns))}
    if tracker.solved_at is not None:
        metrics["solve_seconds"] = tracker.solved_at[0]
        metrics["solve_steps"] = float(tracker.solved_at[1])
    save_torch_agent(ctx.work_dir, {"tool": tool, "kind": "mlp", "env": CARTPOLE,
                                    "activation": "tanh", "hidden": p.hidden,
                                    "metrics": metrics}, state)
    series = {"training episodes": (episode_steps, episode_returns)}
    if tracker.evals:
        series["greedy eval (100 ep, capped)"] = ([s for s, _ in tracker.evals],
                                                  [v for _, v in tracker.evals])
    curve = learning_curve_png(series, title=f"{label} on CartPole-v1", xlabel="env steps",
                               smooth_window=20, hline=CARTPOLE_SOLVED)
    ctx.report(0.96, "recording an episode")
    images, note = episode_images(
        CARTPOLE, lambda obs: int(mlp_forward(arrays, np.asarray(obs)[None])[0].argmax()),
        p.seed, curve)
    ctx.report(1.0, "done")
    solved = tracker.solved_at
    solved_text = (f"solved (eval mean >= 475) after {solved[1]} env steps in {solved[0]:.1f} s"
                   if solved else f"not solved within {steps_done} env steps")
    text = (f"{label} on CartPole-v1: {solved_text}. Final greedy evaluation over "
            f"{p.eval_episodes} episodes: mean reward {final:.1f}.{note}")
    return ToolResult(text=text, metrics=metrics,
                      images=images,
                      artifacts={"agent": ctx.work_dir / "agent.json"},
                      follow_up=f"/play {tool} <job id>")


def _setup(seed: int) -> None:
    import torch

    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    torch.manual_seed(seed)


def train_dqn(ctx: ToolContext[DQNParams]) -> ToolResult:
    """DQN: epsilon-greedy acting, a replay buffer, Huber TD loss against a target network."""
    import gymnasium as gym
    import torch
    import torch.nn.functional as F

    p = ctx.params
    _setup(p.seed)
    rng = np.random.default_rng(p.seed)
    tracker = SolveTracker(seed=p.seed)
    env = gym.make(CARTPOLE)
    q_net, target = mlp(4, p.hidden, 2), mlp(4, p.hidden, 2)
    target.load_state_dict(q_net.state_dict())
    optim = torch.optim.Adam(q_net.parameters(), lr=p.lr)
    size = min(p.buffer_size, p.steps)
    obs_buf = np.zeros((size, 4), dtype=np.float32)
    next_buf = np.zeros((size, 4), dtype=np.float32)
    act_buf = np.zeros(size, dtype=np.int64)
    rew_buf = np.zeros(size, dtype=np.float32)
    term_buf = np.zeros(size, dtype=np.float32)
    episode_steps: list[int] = []
    episode_returns: list[float] = []
    obs, _ = env.reset(seed=p.seed)
    total, updates, step = 0.0, 0, 0
    decay_steps = p.exploration_fraction * p.steps
    for step in range(1, p.steps + 1):
        epsilon = max(p.final_epsilon, 1.0 - (1.0 - p.final_epsilon) * step / decay_steps)
        if rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(q_net(torch.as_tensor(obs)[None]).argmax())
        nxt, reward, terminated, truncated, _ = env.step(action)
        i = (step - 1) % size
        obs_buf[i], next_buf[i], act_buf[i] = obs, nxt, action
        rew_buf[i], term_buf[i] = reward, float(terminated)
        total += float(reward)
        obs = nxt
        if terminated or truncated:
            episode_steps.append(step)
            episode_returns.append(total)
            total = 0.0
            obs, _ = env.reset()
        if step > p.learning_starts and step % p.train_freq == 0:
            ctx.report(0.9 * step / p.steps, f"step {step}, epsilon {epsilon:.2f}")
            filled = min(step, size)
            for _ in range(p.gradient_steps):
                idx = rng.integers(filled, size=p.batch_size)
                o, o2 = torch.as_tensor(obs_buf[idx]), torch.as_tensor(next_buf[idx])
                with torch.no_grad():
                    if p.double:
                        best = q_net(o2).argmax(dim=1, keepdim=True)
                        q_next = target(o2).gather(1, best).squeeze(1)
                    else:
                        q_next = target(o2).max(dim=1).values
                    y = (torch.as_tensor(rew_buf[idx])
                         + p.gamma * (1.0 - torch.as_tensor(term_buf[idx])) * q_next)
                q = q_net(o).gather(1, torch.as_tensor(act_buf[idx])[:, None]).squeeze(1)
                loss = F.smooth_l1_loss(q, y)
                optim.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(q_net.parameters(), 10.0)
                optim.step()
                updates += 1
                if updates % p.target_update == 0:
                    target.load_state_dict(q_net.state_dict())
        if (step % p.eval_every == 0 and step > p.learning_starts
                and tracker.evaluate(q_net, step) and p.stop_when_solved):
            break
    env.close()
    return _finish(ctx, "rl.dqn", "DQN" + (" (double)" if p.double else ""), q_net, tracker,
                   episode_steps, episode_returns, step)


def _collect_episodes(
    envs: Any, policy: torch.nn.Module, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run one episode per env to the end; (obs[T,N,4], actions[T,N], rewards[T,N], mask[T,N])."""
    import torch

    obs, _ = envs.reset(seed=seed)
    n = obs.shape[0]
    alive = np.ones(n, dtype=bool)
    obs_l, act_l, rew_l, mask_l = [], [], [], []
    while alive.any():
        with torch.no_grad():
            logits = policy(torch.as_tensor(obs))
            actions = torch.distributions.Categorical(logits=logits).sample().numpy()
        nxt, reward, terminated, truncated, _ = envs.step(actions)
        obs_l.append(obs)
        act_l.append(actions)
        rew_l.append(reward * alive)
        mask_l.append(alive.copy())
        alive &= ~(terminated | truncated)
        obs = nxt
    return np.stack(obs_l), np.stack(act_l), np.stack(rew_l), np.stack(mask_l)


def train_reinforce(ctx: ToolContext[ReinforceParams]) -> ToolResult:
    """REINFORCE: Monte-Carlo policy gradient on batches of complete episodes."""
    import gymnasium as gym
    import torch

    p = ctx.params
    _setup(p.seed)
    tracker = SolveTracker(seed=p.seed)
    envs = gym.make_vec(CARTPOLE, num_envs=p.batch_episodes,
                        vectorization_mode="vector_entry_point")
    policy = mlp(4, p.hidden, 2)
    optim = torch.optim.Adam(policy.parameters(), lr=p.lr)
    episode_steps: list[int] = []
    episode_returns: list[float] = []
    steps_done, batch, next_eval = 0, 0, p.eval_every
    try:
        while steps_done < p.steps:
            ctx.report(0.9 * steps_done / p.steps, f"step {steps_done}")
            obs, actions, rewards, mask = _collect_episodes(envs, policy, p.seed * 7919 + batch)
            batch += 1
            lengths = mask.sum(axis=0)
            for length in lengths:
                steps_done += int(length)
                episode_steps.append(steps_done)
                episode_returns.append(float(length))
            returns = np.zeros_like(rewards)
            running = np.zeros(rewards.shape[1], dtype=np.float32)
            for t in range(rewards.shape[0] - 1, -1, -1):
                running = rewards[t] + p.gamma * running * mask[t]
                returns[t] = running
            valid = mask.astype(bool)
            adv = (returns - returns[valid].mean()) / (returns[valid].std() + 1e-8)
            logits = policy(torch.as_tensor(obs[valid]))
            dist = torch.distributions.Categorical(logits=logits)
            logp = dist.log_prob(torch.as_tensor(actions[valid]))
            loss = (-(logp * torch.as_tensor(adv[valid], dtype=torch.float32)).sum()
                    / p.batch_episodes - p.entropy_coef * dist.entropy().mean())
            optim.zero_grad()
            loss.backward()
            optim.step()
            if steps_done >= next_eval:
                next_eval += p.eval_every
                if tracker.evaluate(policy, steps_done) and p.stop_when_solved:
                    break
    finally:
        envs.close()
    return _finish(ctx, "rl.reinforce", "REINFORCE", policy, tracker, episode_steps,
                   episode_returns, steps_done)


def train_a2c(ctx: ToolContext[A2CParams]) -> ToolResult:
    """A2C: n-step advantage actor-critic over parallel envs (separate actor and critic)."""
    import gymnasium as gym
    import torch

    p = ctx.params
    _setup(p.seed)
    tracker = SolveTracker(seed=p.seed)
    envs = gym.make_vec(CARTPOLE, num_envs=p.n_envs, vectorization_mode="vector_entry_point")
    actor, critic = mlp(4, p.hidden, 2), mlp(4, p.hidden, 1)
    optim = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=p.lr)
    episode_steps: list[int] = []
    episode_returns: list[float] = []
    obs, _ = envs.reset(seed=p.seed)
    # gymnasium's vector CartPole resets a finished env on the *next* step; that step's
    # transition is not part of any episode and is masked out.
    resetting = np.zeros(p.n_envs, dtype=bool)
    running_return = np.zeros(p.n_envs)
    steps_done, next_eval = 0, p.eval_every
    try:
        while steps_done < p.steps:
            ctx.report(0.9 * steps_done / p.steps, f"step {steps_done}")
            obs_l, act_l, rew_l, term_l, done_l, valid_l, next_l = [], [], [], [], [], [], []
            for _ in range(p.n_steps):
                with torch.no_grad():
                    logits = actor(torch.as_tensor(obs))
                    actions = torch.distributions.Categorical(logits=logits).sample().numpy()
                nxt, reward, terminated, truncated, _ = envs.step(actions)
                valid = ~resetting
                done = (terminated | truncated) & valid
                obs_l.append(obs)
                act_l.append(actions)
                rew_l.append(reward)
                term_l.append(terminated & valid)
                done_l.append(done)
                valid_l.append(valid)
                next_l.append(nxt)
                steps_done += int(valid.sum())
                running_return += reward * valid
                for i in np.flatnonzero(done):
                    episode_steps.append(steps_done)
                    episode_returns.append(float(running_return[i]))
                    running_return[i] = 0.0
                resetting = done
                obs = nxt
            obs_t = torch.as_tensor(np.stack(obs_l))
            with torch.no_grad():
                next_values = critic(torch.as_tensor(np.stack(next_l))).squeeze(-1).numpy()
            targets = np.zeros((p.n_steps, p.n_envs), dtype=np.float32)
            running = next_values[-1]
            for t in range(p.n_steps - 1, -1, -1):
                # At an episode end bootstrap from the final observation (0 if terminated);
                # otherwise continue the n-step return.
                cont = np.where(done_l[t], next_values[t], running)
                running = rew_l[t] + p.gamma * (1.0 - term_l[t]) * cont
                targets[t] = running
            valid_t = torch.as_tensor(np.stack(valid_l))
            values = critic(obs_t).squeeze(-1)
            target_t = torch.as_tensor(targets)
            adv = (target_t - values).detach()
            dist = torch.distributions.Categorical(logits=actor(obs_t))
            logp = dist.log_prob(torch.as_tensor(np.stack(act_l)))
            n_valid = valid_t.sum().clamp(min=1)
            actor_loss = -(logp * adv * valid_t).sum() / n_valid
            critic_loss = (((target_t - values) ** 2) * valid_t).sum() / n_valid
            entropy = (dist.entropy() * valid_t).sum() / n_valid
            loss = actor_loss + p.value_coef * critic_loss - p.entropy_coef * entropy
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*actor.parameters(), *critic.parameters()], 0.5)
            optim.step()
            if steps_done >= next_eval:
                next_eval += p.eval_every
                if tracker.evaluate(actor, steps_done) and p.stop_when_solved:
                    break
    finally:
        envs.close()
    return _finish(ctx, "rl.a2c", "A2C", actor, tracker, episode_steps, episode_returns,
                   steps_done)


def _spec(name: str, label: str, func: Any, params: type[DeepParams],
          examples: tuple[str, ...]) -> ToolSpec:
    return register(ToolSpec(
        name=name,
        course="rl",
        summary=f"{label} on CartPole-v1 (torch); stops when solved (eval mean >= 475).",
        commands=(
            ToolCommand("train", func, params, f"train a {label} agent on CartPole-v1"),
            play_command(label),
        ),
        examples=examples,
        headline_metric="mean_reward",
    ))


DQN = _spec("rl.dqn", "DQN (replay + target network)", train_dqn, DQNParams, (
    "train a dqn on cartpole", "deep q network on CartPole", "run DQN with experience replay",
    "train a deep q-network", "dqn agent with a target network",
    "deep q learning on cartpole for 50k steps",
))
REINFORCE = _spec("rl.reinforce", "REINFORCE policy gradient", train_reinforce,
                  ReinforceParams, (
    "train reinforce on cartpole", "policy gradient agent for CartPole",
    "train a reinforce agent", "vanilla policy gradient on cartpole",
    "monte carlo policy gradient for cartpole",
))
A2C = _spec("rl.a2c", "advantage actor-critic (A2C)", train_a2c, A2CParams, (
    "train an actor critic on cartpole", "run a2c on CartPole",
    "advantage actor critic on cartpole", "train a2c",
    "actor-critic agent for the pole balancing task",
))

SPECS: list[ToolSpec] = [DQN, REINFORCE, A2C]
