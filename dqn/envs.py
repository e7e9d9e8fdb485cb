"""Environments: ALE games through ale-py's C++ vector env, classic control through gymnasium.

Both kinds come out as a gymnasium `VectorEnv` with NEXT_STEP autoreset: the step after a game
ends returns the reset observation, reward 0, and ignores its action. That step is not a
transition; `EpisodeTracker` says which steps are, and turns life losses into the training-only
terminal signal without ever restarting a game early.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.env import AtariEnv
from gymnasium.spaces import Discrete
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from dqn.config import ConfigError, EnvBackend, EnvConfig, EnvKind

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
            close = difflib.get_close_matches(cfg.id.lower(), games, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(close)}?"
                if close
                else f"use a snake_case ROM name such as {', '.join(games[:3])} "
                f"({len(games)} available)."
            )
            raise ConfigError(
                f"env.id={cfg.id!r} is not an ALE game in ale-py {ale_py.__version__}: {hint}"
            )
    else:
        try:
            gym.spec(cfg.id)
        except gym.error.Error:
            raise ConfigError(
                f"env.id={cfg.id!r} is not a registered gymnasium environment: "
                "use an id such as CartPole-v1."
            ) from None


@runtime_checkable
class SplitStepping(Protocol):
    """ale-py's vector env interface for stepping in two halves: `send` starts the emulators
    and returns at once, `recv` waits for (some of) their results."""

    def send(self, actions: np.ndarray) -> None:
        """Start the envs of the last report stepping on `actions`; return at once."""
        ...

    def recv(self) -> tuple[Any, ...]:
        """Wait for step results: (obs, rewards, terminated, truncated, info)."""
        ...


def action_count(envs: gym.vector.VectorEnv) -> int:
    """How many actions each env of `envs` has (ConfigError unless they are discrete)."""
    space = envs.single_action_space
    if not isinstance(space, Discrete):
        raise ConfigError(
            f"This env has a {type(space).__name__} action space; DQN needs discrete actions: "
            "choose another env."
        )
    return int(space.n)


def observation_format(envs: gym.vector.VectorEnv) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one env's observations (ConfigError unless they are arrays)."""
    space = envs.single_observation_space
    if space.shape is None or space.dtype is None:
        raise ConfigError(
            f"This env's observations ({type(space).__name__}) are not arrays; DQN needs "
            "images or vectors: choose another env."
        )
    return tuple(space.shape), np.dtype(space.dtype)


class ActionSubset(gym.vector.VectorActionWrapper):
    """Agent action k plays the game's action `subset[k]` (the original played SI actions 1-5)."""

    def __init__(self, env: gym.vector.VectorEnv, subset: list[int]):
        super().__init__(env)
        n = action_count(env)
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

    def send(self, actions: np.ndarray) -> None:
        """Asynchronous stepping (ale-py's send/recv), with the actions mapped."""
        self._split_env().send(self.actions(actions))

    def recv(self) -> tuple[Any, ...]:
        """Results of the envs that finished stepping."""
        return self._split_env().recv()

    def _split_env(self) -> SplitStepping:
        if not isinstance(self.env, SplitStepping):
            raise TypeError("send and recv need ale-py's vector env under ActionSubset.")
        return self.env


class NoopFireReset(gym.Wrapper):
    """At reset: random no-op frames, then one FIRE frame in games that have FIRE, on the raw
    one-frame env: the order and frame counts of ale-py's vector env.
    Goes under `AtariPreprocessing`, which reads the screen after this reset returns."""

    def __init__(self, env: AtariEnv, noop_max: int, fire: bool):
        super().__init__(env)
        self.noop_max = noop_max
        self.ale = env.ale
        self.fire = fire and ale_py.Action.FIRE in self.ale.getMinimalActionSet()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the game, then play the no-ops and the FIRE frame."""
        obs, info = self.env.reset(**kwargs)
        ale = self.ale
        # ale-py plays 0..noop_max-1 no-op frames, one fewer at most when FIRE follows.
        high = self.noop_max - 1 if self.fire else self.noop_max
        for _ in range(int(self.np_random.integers(0, high)) if high > 0 else 0):
            ale.act(ale_py.Action.NOOP)
        if self.fire:
            ale.act(ale_py.Action.FIRE)
        return obs, info


def make_gymnasium_atari_env(cfg: EnvConfig) -> gym.Env:
    """One Atari game with gymnasium's wrappers, preprocessed like `atari_env_kwargs` says."""
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError:
        raise ConfigError(
            "env.backend=gymnasium needs OpenCV: pip install opencv-python-headless, "
            "or use env.backend=ale."
        ) from None
    game = AtariEnv(
        game=cfg.id,
        frameskip=1,
        repeat_action_probability=cfg.repeat_action_probability,
        full_action_space=cfg.full_action_space,
        max_num_frames_per_episode=cfg.max_episode_frames,
    )
    frames = gym.wrappers.AtariPreprocessing(
        NoopFireReset(game, cfg.noop_max, cfg.fire_reset),
        noop_max=0,
        frame_skip=cfg.frame_skip,
        screen_size=cfg.screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    return gym.wrappers.FrameStackObservation(frames, cfg.frame_stack, padding_type="zero")


def make_vector_env(
    cfg: EnvConfig, num_envs: int, batch_size: int = 0, num_threads: int = 0
) -> gym.vector.VectorEnv:
    """Build `num_envs` copies of the configured env as one NEXT_STEP-autoreset vector env.

    Atari only: `batch_size` < `num_envs` makes stepping asynchronous (each `recv` returns the
    first `batch_size` envs to finish, named by info["env_id"]); `num_threads` sizes ale-py's
    thread pool (0 = its default).
    """
    check_env_id(cfg)
    env: gym.vector.VectorEnv
    if cfg.kind == EnvKind.atari and cfg.backend == EnvBackend.ale:
        env = ale_py.AtariVectorEnv(
            cfg.id,
            num_envs,
            batch_size=batch_size,
            num_threads=num_threads,
            **atari_env_kwargs(cfg),
        )
    else:
        if batch_size not in (0, num_envs):
            raise ConfigError(
                "hw.env_batch_size (asynchronous stepping) needs env.backend=ale: set it to 0."
            )
        if cfg.kind == EnvKind.atari:
            env = gym.vector.SyncVectorEnv(
                [lambda: make_gymnasium_atari_env(cfg)] * num_envs,
                autoreset_mode=AutoresetMode.NEXT_STEP,
            )
        else:
            env = gym.make_vec(
                cfg.id,
                num_envs=num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
            )
    if not isinstance(env.single_action_space, Discrete):
        env.close()
        raise ConfigError(
            f"env.id={cfg.id!r} has a {type(env.single_action_space).__name__} action space; "
            "DQN needs discrete actions: choose another env."
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
    """What one report of some envs means for learning (arrays align with its `env_ids`)."""

    env_ids: np.ndarray  # which envs reported
    is_transition: np.ndarray  # bool: False for a first observation (reset, autoreset step)
    dones: np.ndarray  # float32: 1.0 where the TD target must not bootstrap
    episodes: list[Episode] = field(default_factory=list)  # games that ended in this report


class EpisodeTracker:
    """Bookkeeping of a NEXT_STEP-autoreset vector env: transitions, dones, finished games.

    Each env's first report after `begin()`, and its report after a game ends (the autoreset
    step), is a first observation, not a transition. With `terminal_on_life_loss`, a life lost
    (info["lives"] going down) ends the TD target like a game over, but the game continues;
    returns always add up whole games. Truncation (the frame cap) never sets `dones`: the
    value of the next state is bootstrapped.
    """

    def __init__(self, num_envs: int, terminal_on_life_loss: bool):
        self.num_envs = num_envs
        self.terminal_on_life_loss = terminal_on_life_loss
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.first_life_returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.lost_a_life = np.zeros(num_envs, dtype=bool)
        self.starting = np.ones(num_envs, dtype=bool)  # next report is a first observation
        self.lives = np.zeros(num_envs, dtype=np.int64)

    def begin(self, env_ids: np.ndarray, lives: np.ndarray | None) -> None:
        """Record the first observations `env.reset()` returned for `env_ids`; every other env's
        next report is expected to be a first observation too (asynchronous resets)."""
        self.starting[:] = True
        no = np.zeros(len(env_ids), dtype=bool)
        self.step(env_ids, np.zeros(len(env_ids)), no, no, lives)

    def step(
        self,
        env_ids: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        lives: np.ndarray | None,
    ) -> StepOutcome:
        """Account for one report of the envs `env_ids` (a reset or a step result)."""
        ids = np.asarray(env_ids)
        is_transition = ~self.starting[ids]
        lives = self.lives[ids] if lives is None else np.asarray(lives)
        life_lost = is_transition & (lives < self.lives[ids])
        game_over = is_transition & (terminated | truncated)
        stepped = ids[is_transition]

        self.returns[stepped] += rewards[is_transition]
        self.lengths[stepped] += 1
        first_life = is_transition & ~self.lost_a_life[ids]
        self.first_life_returns[ids[first_life]] += rewards[first_life]
        self.lost_a_life[ids[life_lost]] = True

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
            for i in ids[game_over]
        ]
        # A first observation starts a new game; a game over makes the next report one.
        fresh = ids[~is_transition]
        self.returns[fresh] = 0
        self.first_life_returns[fresh] = 0
        self.lengths[fresh] = 0
        self.lost_a_life[fresh] = False
        self.starting[ids] = game_over
        self.lives[ids] = lives
        return StepOutcome(ids, is_transition, dones.astype(np.float32), episodes)
