"""Environments: ALE games through ale-py's C++ vector env, classic control through gymnasium.

Both kinds come out as a gymnasium `VectorEnv` with NEXT_STEP autoreset: the step after a game
ends returns the reset observation, reward 0, and ignores its action. That step is not a
transition; `EpisodeTracker` says which steps are, and turns life losses into the training-only
terminal signal without ever restarting a game early (the original agent's defect #1).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from gymnasium.spaces import Discrete
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from dqn.config import ConfigError, EnvConfig, EnvKind

log = logging.getLogger(__name__)

gym.register_envs(ale_py)


def atari_env_kwargs(cfg: EnvConfig) -> dict:
    """Keyword arguments of `ale_py.AtariVectorEnv` for an env config.

    Life loss and reward clipping are left to Python (`EpisodeTracker`, the trainer) so that
    the emulator always plays whole games and reports raw scores.
    """
    return dict(
        frameskip=cfg.frame_skip,
        maxpool=True,
        stack_num=cfg.frame_stack,
        img_height=cfg.screen_size,
        img_width=cfg.screen_size,
        grayscale=True,
        noop_max=cfg.noop_max,
        repeat_action_probability=cfg.repeat_action_probability,
        full_action_space=cfg.full_action_space,
        use_fire_reset=cfg.fire_reset,
        max_num_frames_per_episode=cfg.max_episode_frames,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )


def check_env_id(cfg: EnvConfig) -> None:
    """Raise ConfigError unless `cfg.id` names an installed ALE game or gymnasium env."""
    if cfg.kind == EnvKind.atari:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ale-py warns before returning None
            rom_path = roms.get_rom_path(cfg.id)
        if rom_path is None:
            games = roms.get_all_rom_ids()
            raise ConfigError(
                f"env.id={cfg.id!r} is not an ALE game in ale-py {ale_py.__version__}: use a "
                f"snake_case ROM name such as {', '.join(games[:3])} ({len(games)} available)."
            )
    else:
        try:
            gym.spec(cfg.id)
        except gym.error.Error:
            raise ConfigError(
                f"env.id={cfg.id!r} is not a registered gymnasium environment: "
                "use an id such as CartPole-v1."
            ) from None


class ActionSubset(gym.vector.VectorActionWrapper):
    """Agent action k plays the game's action `subset[k]` (the original played SI actions 1-5)."""

    def __init__(self, env: gym.vector.VectorEnv, subset: list[int]):
        super().__init__(env)
        n = env.single_action_space.n
        if max(subset) >= n:
            raise ConfigError(
                f"env.action_subset={list(subset)} names action {max(subset)} but this game has "
                f"actions 0..{n - 1}: pick indices below {n}."
            )
        self.table = np.asarray(subset, dtype=np.int64)
        self.single_action_space = Discrete(len(subset))
        self.action_space = batch_space(self.single_action_space, env.num_envs)

    def actions(self, actions: np.ndarray) -> np.ndarray:
        """Map agent actions to game actions."""
        return self.table[actions]


def make_vector_env(cfg: EnvConfig, num_envs: int) -> gym.vector.VectorEnv:
    """Build `num_envs` copies of the configured env as one NEXT_STEP-autoreset vector env."""
    check_env_id(cfg)
    if cfg.kind == EnvKind.atari:
        env = ale_py.AtariVectorEnv(cfg.id, num_envs, **atari_env_kwargs(cfg))
    else:
        env = gym.make_vec(
            cfg.id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
        )
    if cfg.action_subset is not None:
        env = ActionSubset(env, list(cfg.action_subset))
    return env


@dataclass
class Episode:
    """One finished game, scored in raw (unclipped) points."""

    env_index: int
    episode_return: float
    length: int  # agent steps
    first_life_return: float  # points scored before the first life was lost


@dataclass
class StepOutcome:
    """What one vector step means for learning."""

    is_transition: np.ndarray  # bool (num_envs,): False on the autoreset step
    dones: np.ndarray  # float32 (num_envs,): 1.0 where the TD target must not bootstrap
    episodes: list[Episode] = field(default_factory=list)  # games that ended on this step


class EpisodeTracker:
    """Bookkeeping of a NEXT_STEP-autoreset vector env: transitions, dones, finished games.

    With `terminal_on_life_loss`, a life lost (info["lives"] going down) ends the TD target
    like a game over, but the game itself continues; returns always add up whole games.
    Truncation (the frame cap) never sets `dones`: the value of the next state is bootstrapped.
    """

    def __init__(self, num_envs: int, terminal_on_life_loss: bool):
        self.num_envs = num_envs
        self.terminal_on_life_loss = terminal_on_life_loss
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.first_life_returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.lost_a_life = np.zeros(num_envs, dtype=bool)
        self.resetting = np.zeros(num_envs, dtype=bool)
        self.lives = np.zeros(num_envs, dtype=np.int64)

    def reset(self, info: dict) -> None:
        """Start fresh games after `env.reset()`."""
        self.returns[:] = 0
        self.first_life_returns[:] = 0
        self.lengths[:] = 0
        self.lost_a_life[:] = False
        self.resetting[:] = False
        self.lives[:] = info.get("lives", 0)

    def step(
        self,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict,
    ) -> StepOutcome:
        """Account for one `env.step()` result."""
        is_transition = ~self.resetting
        lives = np.asarray(info.get("lives", self.lives))
        life_lost = is_transition & (lives < self.lives)
        game_over = is_transition & (terminated | truncated)

        self.returns[is_transition] += rewards[is_transition]
        self.lengths[is_transition] += 1
        first_life = is_transition & ~self.lost_a_life
        self.first_life_returns[first_life] += rewards[first_life]
        self.lost_a_life |= life_lost

        dones = terminated & is_transition
        if self.terminal_on_life_loss:
            dones = dones | life_lost
        episodes = [
            Episode(
                env_index=int(i),
                episode_return=float(self.returns[i]),
                length=int(self.lengths[i]),
                first_life_return=float(self.first_life_returns[i]),
            )
            for i in np.flatnonzero(game_over)
        ]
        self.returns[game_over] = 0
        self.first_life_returns[game_over] = 0
        self.lengths[game_over] = 0
        self.lost_a_life[game_over] = False
        self.resetting = game_over
        self.lives = lives.copy()
        return StepOutcome(is_transition, dones.astype(np.float32), episodes)
