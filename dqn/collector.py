"""Collection: steps the training envs and writes what they return into the replay buffer.

`send` starts the emulators on the chosen actions and returns at once (ale-py runs them in C++
threads), so the learner can update while they play; `recv` waits for results, records the
transitions and reports finished games. With `hw.env_batch_size` < `hw.num_envs`, each `recv`
returns only the first envs to finish, so slow envs never hold the others up.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from dqn.envs import EpisodeTracker, SplitStepping, StepOutcome
from dqn.replay import FrameReplayBuffer


class Collector:
    """Drives a NEXT_STEP-autoreset vector env for training."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        replay: FrameReplayBuffer,
        terminal_on_life_loss: bool,
        clip_rewards: bool,
    ):
        self.envs = envs
        self.replay = replay
        self.clip_rewards = clip_rewards
        self.tracker = EpisodeTracker(envs.num_envs, terminal_on_life_loss)
        self.last_actions = np.zeros(envs.num_envs, dtype=np.int64)
        self._pending: np.ndarray | None = None  # actions of a gymnasium env's next step
        self._env_ids = np.arange(envs.num_envs)
        # ale-py: send now, recv later (a gymnasium vector env steps in one call).
        self.split_env = (
            envs
            if isinstance(envs.unwrapped, SplitStepping) and isinstance(envs, SplitStepping)
            else None
        )
        # All envs step together (not ale-py's asynchronous batches): results are reproducible.
        self.synchronous = getattr(envs.unwrapped, "batch_size", envs.num_envs) == envs.num_envs

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Start new games everywhere; returns the first observations and their env ids."""
        obs, info = self.envs.reset(seed=seed)
        env_ids = np.asarray(info.get("env_id", self._env_ids[: len(obs)]))
        self.tracker.begin(env_ids, info.get("lives"))
        self.replay.start_episodes(env_ids, obs)
        return obs, env_ids

    def send(self, env_ids: np.ndarray, actions: np.ndarray) -> None:
        """Start stepping envs `env_ids` (those of the last report) with `actions`."""
        self.last_actions[env_ids] = actions
        if self.split_env is not None:
            self.split_env.send(actions)
        else:
            self._pending = actions

    def recv(self) -> tuple[np.ndarray, np.ndarray, StepOutcome]:
        """Wait for step results; store them; return (observations, env ids, outcome)."""
        if self.split_env is not None:
            obs, rewards, terminated, truncated, info = self.split_env.recv()
        else:
            obs, rewards, terminated, truncated, info = self.envs.step(self._pending)
        env_ids = np.asarray(info.get("env_id", self._env_ids[: len(obs)]))
        outcome = self.tracker.step(env_ids, rewards, terminated, truncated, info.get("lives"))
        real = outcome.is_transition
        learn_rewards = np.sign(rewards) if self.clip_rewards else rewards
        if real.all():  # the common case: no masking copies
            self.replay.add(env_ids, self.last_actions[env_ids], learn_rewards, outcome.dones, obs)
        else:
            if real.any():
                self.replay.add(
                    env_ids[real],
                    self.last_actions[env_ids[real]],
                    learn_rewards[real],
                    outcome.dones[real],
                    obs[real],
                )
            self.replay.start_episodes(env_ids[~real], obs[~real])  # new games' first frames
        return obs, env_ids, outcome

    def close(self) -> None:
        """Release the envs."""
        self.envs.close()
