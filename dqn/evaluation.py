"""Evaluation: whole games with a near-greedy policy, scored in raw points."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from dqn.agent import DQNAgent
from dqn.envs import Episode, EpisodeTracker


@dataclass
class EvalResult:
    """Finished games of one evaluation."""

    episodes: list[Episode]

    @property
    def returns(self) -> np.ndarray:
        """Raw game scores."""
        return np.array([e.episode_return for e in self.episodes], dtype=np.float64)

    @property
    def mean(self) -> float:
        """Mean game score."""
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        """Standard deviation of the game scores."""
        return float(self.returns.std())

    @property
    def first_life_mean(self) -> float:
        """Mean points scored before the first life was lost."""
        return float(np.mean([e.first_life_return for e in self.episodes]))


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """How many games each env plays so that `episodes` are played in all.

    Fixed quotas (not "the first N games to finish") avoid a bias toward short games.
    """
    quotas = np.full(num_envs, episodes // num_envs)
    quotas[: episodes % num_envs] += 1
    return quotas


def evaluate(
    agent: DQNAgent, env: gym.vector.VectorEnv, episodes: int, epsilon: float, seed: int
) -> EvalResult:
    """Play `episodes` whole games with epsilon-greedy actions; env and policy seeded by `seed`."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    env_ids = np.arange(env.num_envs)
    tracker = EpisodeTracker(env.num_envs, terminal_on_life_loss=False)
    no = np.zeros(env.num_envs, dtype=bool)
    tracker.step(env_ids, np.zeros(env.num_envs), no, no, info.get("lives"))
    quotas = episode_quotas(episodes, env.num_envs)
    finished: list[Episode] = []
    played = np.zeros(env.num_envs, dtype=np.int64)
    while (played < quotas).any():
        actions = agent.act(obs, epsilon, rng)
        obs, rewards, terminated, truncated, info = env.step(actions)
        outcome = tracker.step(env_ids, rewards, terminated, truncated, info.get("lives"))
        for episode in outcome.episodes:
            i = episode.env_index
            if played[i] < quotas[i]:
                finished.append(episode)
                played[i] += 1
    return EvalResult(finished)
