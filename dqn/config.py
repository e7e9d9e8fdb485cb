"""Typed configuration: the one place that says what a run may be.

Each Hydra config group merges into a dataclass registered in Hydra's ConfigStore, so a wrong
type or an unknown key fails at composition time with the key's full name. `load_run_config`
converts the composed `DictConfig` into these dataclasses (running the range checks in
`__post_init__`) and rejects keys added with `+`; nothing below the trainer reads a DictConfig.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A mistake the user can fix: the message is one sentence naming the key and the remedy."""


class EnvKind(StrEnum):
    """Which engine runs the environment."""

    atari = "atari"  # ale-py's C++ vector env with the DQN preprocessing built in
    classic = "classic"  # a registered gymnasium env with vector observations (CartPole)


class EnvBackend(StrEnum):
    """What runs an Atari game (classic envs always run on gymnasium)."""

    ale = "ale"  # ale-py's C++ vector env: emulation and preprocessing in C++ threads
    gymnasium = "gymnasium"  # one Python env per copy with gymnasium's wrappers (debugging)


class ExplorationSchedule(StrEnum):
    """How epsilon moves from `exploration_initial_eps` to `exploration_final_eps`."""

    linear = "linear"  # over `exploration_fraction` of the run (Nature DQN, SB3, CleanRL)
    exponential = "exponential"  # multiplied by `exploration_decay` every step (original agent)


class LearningRateSchedule(StrEnum):
    """How the learning rate moves over the run."""

    constant = "constant"
    linear = "linear"  # from agent.lr down to 0 at total_steps (RL Zoo's `lin_` schedules)


class Loss(StrEnum):
    """TD loss."""

    huber = "huber"
    mse = "mse"


class Precision(StrEnum):
    """Numeric precision of the learner's forward and backward passes."""

    auto = "auto"  # bf16 where the hardware computes it natively, else fp32 (fp16 on old GPUs)
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16 (CPU with AVX-512 BF16, Ampere+ GPUs)
    fp16 = "fp16"  # autocast to float16 with gradient scaling (CUDA only, e.g. T4)


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key} {message}")


@dataclass
class EnvConfig:
    """An environment and its preprocessing (the Atari options are ignored by classic envs)."""

    id: str = MISSING  # ALE ROM name (space_invaders) or gymnasium id (CartPole-v1)
    kind: EnvKind = EnvKind.atari
    backend: EnvBackend = EnvBackend.ale  # Atari only; both give identical observations
    frame_skip: int = 4  # emulator frames per agent step; rewards are summed over them
    frame_stack: int = 4  # observations stacked into one agent input
    screen_size: int = 84  # frames are resized to screen_size x screen_size grayscale
    noop_max: int = 30  # up to this many no-op steps after each reset
    repeat_action_probability: float = 0.0  # sticky actions (0.25 in Machado et al. 2018)
    terminal_on_life_loss: bool = True  # a lost life ends the TD target (training only, no reset)
    clip_rewards: bool = True  # learn from sign(reward); logged returns stay raw game scores
    fire_reset: bool = True  # press FIRE after reset in games that need it
    max_episode_frames: int = 108_000  # episode cap in emulator frames (30 minutes of play)
    full_action_space: bool = False  # all 18 actions instead of the game's minimal set
    action_subset: list[int] | None = None  # agent action k plays the game's action subset[k]

    def __post_init__(self) -> None:
        _check(self.frame_skip >= 1, "env.frame_skip", f"must be >= 1, got {self.frame_skip}.")
        _check(self.frame_stack >= 1, "env.frame_stack", f"must be >= 1, got {self.frame_stack}.")
        _check(self.screen_size >= 36, "env.screen_size", f"must be >= 36, got {self.screen_size}.")
        _check(self.noop_max >= 0, "env.noop_max", f"must be >= 0, got {self.noop_max}.")
        _check(
            0.0 <= self.repeat_action_probability < 1.0,
            "env.repeat_action_probability",
            f"must be in [0, 1), got {self.repeat_action_probability}.",
        )
        _check(
            self.max_episode_frames >= 1,
            "env.max_episode_frames",
            f"must be >= 1, got {self.max_episode_frames}.",
        )
        if self.action_subset is not None:
            _check(len(self.action_subset) >= 1, "env.action_subset", "must not be empty.")
            _check(
                min(self.action_subset) >= 0,
                "env.action_subset",
                f"must hold action indices >= 0, got {list(self.action_subset)}.",
            )
            _check(
                len(set(self.action_subset)) == len(self.action_subset),
                "env.action_subset",
                f"must not repeat an action, got {list(self.action_subset)}.",
            )


@dataclass
class AgentConfig:
    """DQN hyperparameters; the names follow Stable-Baselines3's `DQN` where it has one."""

    lr: float = 1e-4
    lr_schedule: LearningRateSchedule = LearningRateSchedule.constant
    # With lr_schedule=linear: the share of the run at lr before the decay to 0 begins, so a
    # seed that takes off late still learns at the full rate (0 = decay from the first step).
    lr_decay_start: float = 0.0
    adam_eps: float = 1e-8
    weight_decay: float = 0.0  # AdamW's decoupled decay per update (times lr); 0 = plain Adam
    gamma: float = 0.99
    n_step: int = 1  # n-step returns (Rainbow: 3)
    batch_size: int = 32
    buffer_size: int = 1_000_000  # transitions wanted; hw.replay_memory_gib may cap it
    learning_starts: int = 80_000  # env steps collected before the first update
    train_freq: int = 4  # env steps between update rounds
    gradient_steps: int = 1  # updates per round
    # Env steps between target-network syncs; 0 = no target network: targets bootstrap from
    # the online network (DrQ(eps)'s target period of one update).
    target_update_interval: int = 1_000
    tau: float = 1.0  # each sync: target <- tau * online + (1 - tau) * target (1 = a copy)
    exploration_schedule: ExplorationSchedule = ExplorationSchedule.linear
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.01
    exploration_fraction: float = 0.10  # linear: share of total_steps spent decaying
    exploration_decay: float = 0.99999975  # exponential: factor per env step
    loss: Loss = Loss.huber  # of scalar Q-values; distributional (C51) uses cross-entropy
    max_grad_norm: float | None = 10.0  # null turns gradient clipping off
    double_q: bool = False  # Double DQN: online net picks the next action, target net values it
    # Prioritized replay (Schaul et al. 2016), proportional: P(i) ~ (priority_i + eps) ** alpha.
    prioritized_replay: bool = False
    priority_alpha: float = 0.5  # 0 = uniform
    priority_beta_start: float = 0.4  # importance-weight exponent, annealed to 1 over the run
    priority_eps: float = 1e-6  # added to |TD error| so every transition can be replayed
    # Noisy nets (Fortunato et al. 2018): learned noise in the head explores; epsilon-greedy
    # exploration is off (eval keeps eval.epsilon).
    noisy_nets: bool = False
    noisy_std: float = 0.1  # initial sigma, scaled by 1/sqrt(fan-in)
    # Distributional C51 (Bellemare et al. 2017): returns as a distribution over num_atoms
    # evenly spaced atoms in [v_min, v_max] (clipped rewards: +-10).
    distributional: bool = False
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    # Munchausen DQN (Vieillard et al. 2020): the target adds alpha * tau * log pi(a|s), clipped
    # to [munchausen_clip, 0], and bootstraps from the soft value of pi = softmax(Q_target / tau).
    munchausen: bool = False
    munchausen_tau: float = 0.03  # entropy temperature
    munchausen_alpha: float = 0.9  # weight of the log-policy bonus
    munchausen_clip: float = -1.0  # lower clip of tau * log pi
    # DrQ (Kostrikov et al. 2021): each sampled observation and next observation is shifted at
    # random by up to this many pixels (edges repeated); 0 turns it off. DrQ uses 4 on Atari.
    random_shift_pad: int = 0
    # Periodic resets (Nikishin et al. 2022; shrink and perturb as SR-SPR and BBF): every
    # reset_interval updates the head is drawn afresh and the torso moves to reset_shrink *
    # itself + (1 - reset_shrink) * fresh weights; Adam starts over. 0 = never.
    reset_interval: int = 0
    reset_shrink: float = 1.0  # 1 keeps the torso (resets of the last layers only)
    # BBF's annealed horizon (Schwarzer et al. 2023): over the first anneal_updates updates,
    # and again after each reset, n-step shrinks from n_step to n_step_final and gamma grows
    # from gamma_initial to gamma, both geometrically (`dqn.returns.annealed_horizon`). BBF:
    # 10 -> 3 and 0.97 -> 0.997 over 10,000 updates. 0 = n_step and gamma throughout.
    anneal_updates: int = 0
    n_step_final: int = 3
    gamma_initial: float = 0.97
    # DrQ's intensity augmentation: each sampled stack times 1 + scale * clip(N(0, 1), -2, 2);
    # 0 turns it off. DrQ uses 0.05.
    intensity_scale: float = 0.0
    # Self-predictive representations (Schwarzer et al. 2021, `dqn.self_prediction`): the
    # loss adds spr_weight times the cosine error of the torso's features predicted spr_steps
    # steps ahead by a transition model. 0 turns it off; SPR uses 2 and 5 steps.
    spr_weight: float = 0.0
    spr_steps: int = 5

    def head_kwargs(self) -> dict:
        """What the agent's switches ask of the network's head (`dqn.networks.QHead`)."""
        return {
            "noisy": self.noisy_nets,
            "noisy_std": self.noisy_std,
            "num_atoms": self.num_atoms if self.distributional else 1,
        }

    def __post_init__(self) -> None:
        _check(self.lr > 0, "agent.lr", f"must be > 0, got {self.lr}.")
        _check(
            0 <= self.priority_alpha <= 1,
            "agent.priority_alpha",
            f"must be in [0, 1], got {self.priority_alpha}.",
        )
        _check(
            0 <= self.priority_beta_start <= 1,
            "agent.priority_beta_start",
            f"must be in [0, 1], got {self.priority_beta_start}.",
        )
        _check(
            self.priority_eps > 0, "agent.priority_eps", f"must be > 0, got {self.priority_eps}."
        )
        _check(self.noisy_std > 0, "agent.noisy_std", f"must be > 0, got {self.noisy_std}.")
        _check(self.num_atoms >= 2, "agent.num_atoms", f"must be >= 2, got {self.num_atoms}.")
        _check(
            self.v_min < self.v_max,
            "agent.v_min",
            f"({self.v_min}) must be below agent.v_max ({self.v_max}).",
        )
        _check(self.adam_eps > 0, "agent.adam_eps", f"must be > 0, got {self.adam_eps}.")
        _check(
            0.0 <= self.lr_decay_start < 1.0,
            "agent.lr_decay_start",
            f"must be a share of the run in [0, 1), got {self.lr_decay_start}.",
        )
        _check(
            self.lr_decay_start == 0.0 or self.lr_schedule == LearningRateSchedule.linear,
            "agent.lr_decay_start",
            "holds the rate before a linear decay: set agent.lr_schedule=linear, or "
            "agent.lr_decay_start=0 for a constant rate.",
        )
        _check(
            self.weight_decay >= 0,
            "agent.weight_decay",
            f"must be >= 0, got {self.weight_decay}.",
        )
        _check(0 < self.gamma <= 1, "agent.gamma", f"must be in (0, 1], got {self.gamma}.")
        _check(self.n_step >= 1, "agent.n_step", f"must be >= 1, got {self.n_step}.")
        _check(
            self.anneal_updates >= 0,
            "agent.anneal_updates",
            f"must be >= 0 (0: no annealing), got {self.anneal_updates}.",
        )
        if self.anneal_updates:
            _check(
                1 <= self.n_step_final <= self.n_step,
                "agent.n_step_final",
                f"={self.n_step_final} must be in [1, agent.n_step={self.n_step}]: the n-step "
                "length anneals down to it.",
            )
            _check(
                0 < self.gamma_initial <= self.gamma < 1,
                "agent.gamma_initial",
                f"={self.gamma_initial} must be in (0, agent.gamma={self.gamma}], with "
                "agent.gamma < 1: the discount anneals up from it.",
            )
            _check(
                not self.prioritized_replay,
                "agent.anneal_updates",
                "needs uniform replay (as BBF): prioritized replay admits transitions by a "
                "fixed n-step window; set agent.prioritized_replay=false or "
                "agent.anneal_updates=0.",
            )
        _check(self.spr_weight >= 0, "agent.spr_weight", f"must be >= 0, got {self.spr_weight}.")
        _check(self.spr_steps >= 1, "agent.spr_steps", f"must be >= 1, got {self.spr_steps}.")
        _check(self.batch_size >= 1, "agent.batch_size", f"must be >= 1, got {self.batch_size}.")
        _check(
            self.buffer_size >= self.batch_size,
            "agent.buffer_size",
            f"must be >= agent.batch_size ({self.batch_size}), got {self.buffer_size}.",
        )
        _check(
            self.learning_starts >= 0,
            "agent.learning_starts",
            f"must be >= 0, got {self.learning_starts}.",
        )
        _check(self.train_freq >= 1, "agent.train_freq", f"must be >= 1, got {self.train_freq}.")
        _check(
            self.gradient_steps >= 1,
            "agent.gradient_steps",
            f"must be >= 1, got {self.gradient_steps}.",
        )
        _check(
            self.target_update_interval >= 0,
            "agent.target_update_interval",
            f"must be >= 0 (0: no target network), got {self.target_update_interval}.",
        )
        _check(0 < self.tau <= 1, "agent.tau", f"must be in (0, 1], got {self.tau}.")
        _check(
            self.tau == 1 or self.target_update_interval > 0,
            "agent.tau",
            f"={self.tau} averages into a target network, and agent.target_update_interval=0 "
            "has none: set agent.target_update_interval >= 1, or agent.tau=1.",
        )
        for key in ("exploration_initial_eps", "exploration_final_eps"):
            value = getattr(self, key)
            _check(0 <= value <= 1, f"agent.{key}", f"must be in [0, 1], got {value}.")
        _check(
            0 < self.exploration_fraction <= 1,
            "agent.exploration_fraction",
            f"must be in (0, 1], got {self.exploration_fraction}.",
        )
        _check(
            0 < self.exploration_decay <= 1,
            "agent.exploration_decay",
            f"must be in (0, 1], got {self.exploration_decay}.",
        )
        _check(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "agent.max_grad_norm",
            f"must be > 0 or null, got {self.max_grad_norm}.",
        )
        _check(
            self.munchausen_tau > 0,
            "agent.munchausen_tau",
            f"must be > 0, got {self.munchausen_tau}.",
        )
        _check(
            0 <= self.munchausen_alpha <= 1,
            "agent.munchausen_alpha",
            f"must be in [0, 1], got {self.munchausen_alpha}.",
        )
        _check(
            self.munchausen_clip < 0,
            "agent.munchausen_clip",
            f"must be < 0, got {self.munchausen_clip}.",
        )
        _check(
            not (self.munchausen and self.distributional),
            "agent.munchausen",
            "needs scalar Q-values: set agent.distributional=false.",
        )
        _check(
            not (self.munchausen and self.double_q),
            "agent.munchausen",
            "bootstraps from the soft value of the target net, which leaves no choice for "
            "Double-Q to make: set agent.double_q=false.",
        )
        _check(
            not (self.munchausen and self.n_step > 1),
            "agent.munchausen",
            "is the one-step target of the paper (its log-policy bonus would cover only the "
            "first of the n steps): set agent.n_step=1.",
        )
        _check(
            self.random_shift_pad >= 0,
            "agent.random_shift_pad",
            f"must be >= 0, got {self.random_shift_pad}.",
        )
        _check(
            self.reset_interval >= 0,
            "agent.reset_interval",
            f"must be >= 0 (0: never), got {self.reset_interval}.",
        )
        _check(
            0 <= self.reset_shrink <= 1,
            "agent.reset_shrink",
            f"must be in [0, 1], got {self.reset_shrink}.",
        )
        _check(
            0 <= self.intensity_scale <= 0.5,
            "agent.intensity_scale",
            f"must be in [0, 0.5], got {self.intensity_scale}.",
        )


@dataclass
class NatureCNNConfig:
    """The Nature DQN torso: three convolutions and a 512-unit layer (uint8 input)."""

    _target_: str = "dqn.networks.NatureCNN"
    features_dim: int = 512
    dueling: bool = False  # value and advantage streams (Wang et al. 2016)

    def __post_init__(self) -> None:
        _check(
            self.features_dim >= 1,
            "network.features_dim",
            f"must be >= 1, got {self.features_dim}.",
        )


@dataclass
class DataEfficientCNNConfig(NatureCNNConfig):
    """Data-efficient Rainbow's torso (van Hasselt et al. 2019): two 5x5/5 convolutions and a
    256-unit layer (uint8 input)."""

    _target_: str = "dqn.networks.DataEfficientCNN"
    features_dim: int = 256


@dataclass
class MLPConfig:
    """A fully connected network for vector observations."""

    _target_: str = "dqn.networks.MLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    dueling: bool = False  # the last hidden layer splits into value and advantage streams

    def __post_init__(self) -> None:
        _check(
            len(self.hidden_sizes) >= 1 and all(size >= 1 for size in self.hidden_sizes),
            "network.hidden_sizes",
            f"must hold sizes >= 1, got {list(self.hidden_sizes)}.",
        )


COMPILE_MODES = {None, "default", "reduce-overhead", "max-autotune"}


@dataclass
class HardwareConfig:
    """What the machine offers: device, environments, threads, replay memory, precision."""

    device: str = "cpu"  # cpu, cuda, cuda:N or mps; never silently replaced
    num_envs: int = 8  # environments stepped together, one batched forward pass for all
    env_batch_size: int = 0  # Atari: < num_envs steps asynchronously in batches; 0 = all (sync)
    env_threads: int = 0  # ale-py's emulator threads; 0 = its default
    torch_threads: int = 0  # 0 keeps PyTorch's default (one per core)
    replay_memory_gib: float = 8.0  # replay buffer budget; caps agent.buffer_size
    precision: Precision = Precision.auto  # bf16 where the hardware computes it natively
    channels_last: bool = False  # NHWC memory format for the convolutions
    compile_mode: str | None = None  # torch.compile the learner: default, reduce-overhead
    # (CUDA graphs), max-autotune; null = eager

    def __post_init__(self) -> None:
        _check(
            re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device) is not None,
            "hw.device",
            f"must be cpu, cuda, cuda:N or mps, got {self.device!r}.",
        )
        _check(self.num_envs >= 1, "hw.num_envs", f"must be >= 1, got {self.num_envs}.")
        _check(
            0 <= self.env_batch_size <= self.num_envs,
            "hw.env_batch_size",
            f"must be in [0, hw.num_envs={self.num_envs}], got {self.env_batch_size}.",
        )
        _check(self.env_threads >= 0, "hw.env_threads", f"must be >= 0, got {self.env_threads}.")
        _check(
            self.torch_threads >= 0, "hw.torch_threads", f"must be >= 0, got {self.torch_threads}."
        )
        _check(
            self.compile_mode in COMPILE_MODES,
            "hw.compile_mode",
            f"must be null or one of {sorted(m for m in COMPILE_MODES if m)}, "
            f"got {self.compile_mode!r}.",
        )
        _check(
            self.replay_memory_gib > 0,
            "hw.replay_memory_gib",
            f"must be > 0, got {self.replay_memory_gib}.",
        )


@dataclass
class EvalConfig:
    """Periodic greedy evaluation on a separate env instance (whole games, raw scores)."""

    interval_steps: int = 250_000  # env steps between evaluations
    episodes: int = 10  # games per evaluation (also for the final one)
    epsilon: float = 0.05  # epsilon-greedy during evaluation
    num_envs: int = 4  # parallel eval environments
    video: bool = False  # a GIF of the first game, as the agent sees it, in TensorBoard

    def __post_init__(self) -> None:
        _check(
            self.interval_steps >= 1,
            "eval.interval_steps",
            f"must be >= 1, got {self.interval_steps}.",
        )
        _check(self.episodes >= 1, "eval.episodes", f"must be >= 1, got {self.episodes}.")
        _check(0 <= self.epsilon <= 1, "eval.epsilon", f"must be in [0, 1], got {self.epsilon}.")
        _check(self.num_envs >= 1, "eval.num_envs", f"must be >= 1, got {self.num_envs}.")


@dataclass
class CheckpointConfig:
    """When `checkpoints/last.pt` is written (also at the end, on Ctrl-C and on SIGTERM), and
    whether the replay buffer is saved with it (`checkpoints/replay.npz`, uint8, no pickle)."""

    interval_steps: int = 100_000
    save_replay: bool = False  # without it, a resumed run refills the buffer for the burn-in
    # true: each periodic checkpoint also restarts every training game, so that with
    # save_replay a resumed run continues bit for bit. false: checkpoints leave the games alone
    # and a resumed run starts new games (as SB3 and CleanRL do).
    exact_resume: bool = False
    # false: a run that finishes deletes its replay snapshot (a suite of finished runs need not
    # keep one per run); extending it later refills the replay.
    keep_replay: bool = True

    def __post_init__(self) -> None:
        _check(
            self.interval_steps >= 1,
            "checkpoint.interval_steps",
            f"must be >= 1, got {self.interval_steps}.",
        )


MAX_SEED = 2**30  # ALE takes 31-bit seeds; eval envs use seed + 1,000,000 + env index


@dataclass
class RunConfig:
    """A whole training run."""

    env: EnvConfig = MISSING  # a game must be chosen: its `id` has no default
    agent: AgentConfig = field(default_factory=AgentConfig)
    network: Any = MISSING  # one of NETWORK_SCHEMAS, chosen by the `network` group
    hw: HardwareConfig = field(default_factory=HardwareConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 1
    total_steps: int = 10_000_000  # env steps (agent steps summed over environments)
    log_interval_steps: int = 1_000  # env steps between scalar writes
    resume: str | None = None  # a run directory to continue from its checkpoints/last.pt

    def __post_init__(self) -> None:
        _check(self.total_steps >= 1, "total_steps", f"must be >= 1, got {self.total_steps}.")
        _check(0 <= self.seed < MAX_SEED, "seed", f"must be in [0, {MAX_SEED}), got {self.seed}.")
        _check(
            self.log_interval_steps >= 1,
            "log_interval_steps",
            f"must be >= 1, got {self.log_interval_steps}.",
        )
        _check(
            self.agent.learning_starts < self.total_steps,
            "agent.learning_starts",
            f"({self.agent.learning_starts}) must be below total_steps ({self.total_steps}), "
            "or the agent never learns.",
        )
        _check(
            not (self.agent.spr_weight and self.hw.compile_mode),
            "agent.spr_weight",
            "runs its update eagerly: set hw.compile_mode=null, or agent.spr_weight=0.",
        )


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

NETWORK_SCHEMAS: dict[str, type[NatureCNNConfig | DataEfficientCNNConfig | MLPConfig]] = {
    "nature_cnn": NatureCNNConfig,  # conf/network/dueling_cnn.yaml is this with dueling on
    "der_cnn": DataEfficientCNNConfig,
    "mlp": MLPConfig,
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (call before composing)."""
    # `${if_set:a,b,c}` is b when a is set, else c (conf/config.yaml: `resume=` picks the dir).
    OmegaConf.register_new_resolver(
        "if_set", lambda value, then, otherwise: then if value else otherwise, replace=True
    )
    # `${shorten:text,n}`: text cut to n characters plus a hash of the rest (sweep job dirs:
    # an Optuna trial's overrides easily pass the 255-character limit of a file name).
    OmegaConf.register_new_resolver("shorten", shorten, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=RunConfig)
    for name, schema in NETWORK_SCHEMAS.items():
        cs.store(group="network", name=f"{name}_schema", node=schema)


def shorten(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit` characters and an
    8-character hash of the whole (so different long texts stay different)."""
    if len(text) <= limit:
        return text
    import hashlib

    return f"{text[:limit]}~{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _unknown_keys(node: DictConfig, schema: type, prefix: str) -> list[str]:
    """Keys of `node` that `schema` does not declare (Hydra's `+key=value` can add them)."""
    names = {f.name: f for f in dataclasses.fields(schema)}
    unknown = []
    for key in node:
        path = f"{prefix}{key!s}"
        if key not in names:
            unknown.append(path)
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            child_type = OmegaConf.get_type(child)
            if isinstance(child_type, type) and dataclasses.is_dataclass(child_type):
                unknown += _unknown_keys(child, child_type, f"{path}.")
    return unknown


def load_run_config(cfg: DictConfig) -> RunConfig:
    """Validate a composed config and turn it into typed objects, or raise ConfigError."""
    unknown = _unknown_keys(cfg, RunConfig, "")
    if unknown:
        raise ConfigError(
            f"Unknown config key {unknown[0]}: check its spelling against "
            "`python scripts/train.py --cfg job`."
        )
    try:
        run = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{key}: {msg}.") from None
    if not isinstance(run, RunConfig):
        raise ConfigError("The config is not a run's config: compose it from conf/config.yaml.")
    check_network_target(run.network)
    return run


def config_dict(run: RunConfig) -> dict[str, Any]:
    """A run's configuration as plain containers (for checkpoints and TensorBoard)."""
    container = OmegaConf.to_container(OmegaConf.structured(run), enum_to_str=True)
    return cast(dict[str, Any], container)  # a structured config's container is a dict


def check_network_target(network: object) -> None:
    """Refuse a network config whose `_target_` is not one of ours (it names code to run)."""
    if (
        not isinstance(network, NatureCNNConfig | DataEfficientCNNConfig | MLPConfig)
        or network._target_ != type(network)._target_
    ):
        raise ConfigError(
            f"network._target_={getattr(network, '_target_', None)!r} is not one of this "
            "project's networks: choose network=nature_cnn, dueling_cnn, der_cnn or mlp."
        )


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides, outside of `@hydra.main`."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [])


def run_config_from_dict(config: dict, source: str) -> RunConfig:
    """Rebuild a validated RunConfig from the plain dict a checkpoint stores."""
    targets = {schema._target_: schema for schema in NETWORK_SCHEMAS.values()}
    network = dict(config.get("network") or {})
    schema = targets.get(str(network.get("_target_")))
    if schema is None:
        raise ConfigError(
            f"{source} names network {network.get('_target_')!r}, which is not one of this "
            "project's networks."
        )
    try:
        cfg = OmegaConf.structured(RunConfig)
        cfg.merge_with({**config, "network": {}})
        cfg.network = OmegaConf.merge(OmegaConf.structured(schema), network)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        raise ConfigError(f"{source} holds a config this version cannot read ({key}).") from None
    return load_run_config(cfg)
