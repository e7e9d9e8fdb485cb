"""Evaluation: whole games with a near-greedy policy, scored in raw points."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dqn.agent import DQNAgent
from dqn.checkpoint import PolicyFile, TrainingCheckpoint, load_checkpoint
from dqn.config import (
    ConfigError,
    EnvBackend,
    EnvConfig,
    EnvKind,
    RunConfig,
    run_config_from_dict,
)
from dqn.envs import Episode, EpisodeTracker, action_count, make_vector_env, observation_format
from dqn.networks import NOISE_PARAMETERS, build_network
from dqn.video import BestGameVideo, EpisodeRecorder


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
    agent: DQNAgent,
    env: gym.vector.VectorEnv,
    episodes: int,
    epsilon: float,
    seed: int,
    recorder: EpisodeRecorder | None = None,
) -> EvalResult:
    """Play `episodes` whole games with epsilon-greedy actions (noisy layers at their mean
    weights); env and policy seeded by `seed`. A `recorder` sees every frame and game end."""
    recorder = recorder or EpisodeRecorder()
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    env_ids = np.arange(env.num_envs)
    recorder.capture(obs, env_ids)
    tracker = EpisodeTracker(env.num_envs, terminal_on_life_loss=False)
    tracker.begin(env_ids, info.get("lives"))
    quotas = episode_quotas(episodes, env.num_envs)
    finished: list[Episode] = []
    played = np.zeros(env.num_envs, dtype=np.int64)
    with agent.evaluating():
        while (played < quotas).any():
            actions = agent.act(obs, epsilon, rng)
            obs, rewards, terminated, truncated, info = env.step(actions)
            recorder.capture(obs, env_ids)
            outcome = tracker.step(env_ids, rewards, terminated, truncated, info.get("lives"))
            for episode in outcome.episodes:
                i = episode.env_index
                counted = played[i] < quotas[i]
                recorder.finish(i, episode.episode_return, counted)
                if counted:
                    finished.append(episode)
                    played[i] += 1
    recorder.close()
    return EvalResult(finished)


@dataclass
class EvalProtocol:
    """How a saved agent is scored (Nature DQN protocol by default)."""

    episodes: int = 30
    epsilon: float = 0.05
    noop_max: int = 30  # up to this many no-op steps at the start of each game
    max_episode_frames: int = 108_000
    repeat_action_probability: float = 0.0  # 0.25 for sticky actions (Machado et al.)
    num_envs: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for key, ok, allowed in (
            ("episodes", self.episodes >= 1, ">= 1"),
            ("epsilon", 0 <= self.epsilon <= 1, "in [0, 1]"),
            ("noop_max", self.noop_max >= 0, ">= 0"),
            ("max_episode_frames", self.max_episode_frames >= 1, ">= 1"),
            ("repeat_action_probability", 0 <= self.repeat_action_probability < 1, "in [0, 1)"),
            ("num_envs", self.num_envs >= 1, ">= 1"),
        ):
            if not ok:
                raise ConfigError(f"{key} must be {allowed}, got {getattr(self, key)}.")


def load_policy_weights(q_net: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load a policy file's weights (`save_policy`): every parameter but the noisy layers'
    noise, whose scales are set to 0 so the network acts with its means in any mode.
    RuntimeError if any other weight is missing or extra."""
    missing, unexpected = q_net.load_state_dict(weights, strict=False)
    not_noise = [name for name in missing if name.rpartition(".")[2] not in NOISE_PARAMETERS]
    if not_noise or unexpected:
        raise RuntimeError(f"missing weights {not_noise[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, tensor in q_net.state_dict(keep_vars=True).items():
            if name in missing:
                tensor.zero_()


def load_agent(
    path: Path, device: torch.device, env_id: str | None = None
) -> tuple[DQNAgent, RunConfig, TrainingCheckpoint | PolicyFile]:
    """Rebuild the agent a checkpoint or policy file holds, with its run's config and record;
    ConfigError on a mismatch."""
    record = load_checkpoint(path)
    run = run_config_from_dict(record.config, str(path))
    if env_id is not None and env_id != run.env.id:
        raise ConfigError(
            f"Checkpoint {path} was trained on {run.env.id}, not {env_id}: evaluate it on "
            f"{run.env.id} or pick a checkpoint trained on {env_id}."
        )
    n_actions = record.n_actions
    q_net = build_network(run.network, record.obs_shape, n_actions, **run.agent.head_kwargs())
    try:
        if isinstance(record, PolicyFile):
            load_policy_weights(q_net, record.q_net)
        else:
            q_net.load_state_dict(record.agent["q_net"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ConfigError(
            f"Checkpoint {path}'s weights do not fit the network its config names "
            f"({type(q_net).__name__}): {first}"
        ) from None
    agent = DQNAgent(q_net, n_actions, run.agent, device)
    return agent, run, record


def evaluate_checkpoint(
    path: Path,
    protocol: EvalProtocol,
    device: torch.device,
    env_id: str | None = None,
    video: Path | None = None,
) -> dict:
    """Score a checkpoint with `protocol`; returns the figures `scripts/evaluate.py` writes.
    With `video`, the best game is also written there as a full-colour mp4."""
    agent, run, record = load_agent(path, device, env_id)
    env_cfg = replace(
        run.env,
        noop_max=protocol.noop_max,
        max_episode_frames=protocol.max_episode_frames,
        repeat_action_probability=protocol.repeat_action_probability,
    )
    if video is not None:
        if run.env.kind != EnvKind.atari:
            raise ConfigError(
                f"video=true records Atari games, and checkpoint {path} plays {run.env.id}: "
                "leave video off."
            )
        # The gymnasium backend gives the same frames (tested) and exposes the colour screen.
        env_cfg = replace(env_cfg, backend=EnvBackend.gymnasium)
    env = make_vector_env(env_cfg, min(protocol.num_envs, protocol.episodes))
    expected = (record.obs_shape, record.n_actions)
    found = (observation_format(env)[0], action_count(env))
    if found != expected:
        env.close()
        raise ConfigError(
            f"Checkpoint {path} expects observations {expected[0]} and {expected[1]} actions, "
            f"but {run.env.id} here gives {found[0]} and {found[1]}."
        )
    recorder = None if video is None else BestGameVideo(env, video, fps=60 / run.env.frame_skip)
    try:
        result = evaluate(agent, env, protocol.episodes, protocol.epsilon, protocol.seed, recorder)
    finally:
        env.close()
    figures = eval_figures(
        result,
        run.env,
        protocol,
        source=str(path),
        seed=run.seed,
        env_steps=record.env_steps,
        training_hours=record.training_hours,
    )
    return {**({"video": str(video)} if video is not None else {}), **figures}


def eval_figures(
    result: EvalResult,
    env: EnvConfig,
    protocol: EvalProtocol,
    *,
    source: str,
    seed: int,
    env_steps: int,
    training_hours: float | None,
) -> dict:
    """The figures of an evaluation as `scripts/evaluate.py` and a run's `final.eval.json`
    write them: the scores, the agent's training seed and age, and the protocol that produced
    them (whose own `seed` seeds the evaluation games)."""
    returns = result.returns
    return {
        "checkpoint": source,
        "env": env.id,
        "seed": seed,
        "env_steps": env_steps,
        "env_frames": env_steps * (env.frame_skip if env.kind == EnvKind.atari else 1),
        "training_hours": training_hours,
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "first_life_mean": result.first_life_mean,
        "episodes": len(returns),
        "returns": returns.tolist(),
        "protocol": {
            **asdict(protocol),
            "frame_skip": env.frame_skip,
            "terminal_on_life_loss": False,
            "scores": "raw game score of whole games (all lives), rewards not clipped",
        },
    }
