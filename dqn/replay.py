"""Uniform experience replay holding uint8 observations (float only for vector envs).

Each slot keeps (obs, action, reward, next_obs, done). Capacity is set by the caller from the
`hw` memory budget; `plan_capacity` checks it against the memory the machine has before any
allocation.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np
import torch

from dqn.config import ConfigError

log = logging.getLogger(__name__)

GIB = 1024**3


class ReplaySamples(NamedTuple):
    """A batch of transitions on the learner's device."""

    observations: torch.Tensor
    actions: torch.Tensor  # int64 (batch,)
    rewards: torch.Tensor  # float32 (batch,)
    next_observations: torch.Tensor
    dones: torch.Tensor  # float32 (batch,), 1.0 = do not bootstrap


def transition_bytes(obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> int:
    """Bytes one transition takes in `ReplayBuffer` (two observations plus scalars)."""
    obs_bytes = int(np.prod(obs_shape)) * np.dtype(obs_dtype).itemsize
    return 2 * obs_bytes + 8 + 4 + 4


def available_memory_bytes() -> int | None:
    """Memory the OS can still give this process (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_capacity(
    buffer_size: int, memory_gib: float, obs_shape: tuple[int, ...], obs_dtype: np.dtype
) -> int:
    """Transitions to allocate: `buffer_size`, capped by the budget, refused if RAM is short."""
    per_transition = transition_bytes(obs_shape, obs_dtype)
    budget_capacity = int(memory_gib * GIB // per_transition)
    capacity = min(buffer_size, budget_capacity)
    if capacity < buffer_size:
        log.warning(
            "The replay holds %d transitions, not agent.buffer_size=%d: that is what "
            "hw.replay_memory_gib=%.1f holds at %d bytes each (raise it if memory allows).",
            capacity, buffer_size, memory_gib, per_transition,
        )
    needed = capacity * per_transition
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ConfigError(
            f"The replay buffer needs {needed / GIB:.1f} GiB for {capacity} transitions but only "
            f"{available / GIB:.1f} GiB of memory is available: lower hw.replay_memory_gib or "
            "agent.buffer_size."
        )
    if capacity < 1:
        raise ConfigError(
            f"hw.replay_memory_gib={memory_gib} cannot hold one transition of "
            f"{per_transition} bytes: raise it."
        )
    return capacity


class ReplayBuffer:
    """Ring buffer of transitions, sampled uniformly."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        device: torch.device,
    ):
        self.capacity = capacity
        self.device = device
        self.observations = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_observations = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Append a batch of transitions (leading dimension = number of transitions)."""
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.observations[idx] = obs
        self.next_observations[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.dones[idx] = dones
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplaySamples:
        """Uniformly sample `batch_size` stored transitions (with replacement)."""
        idx = rng.integers(0, self.size, size=batch_size)
        return self.get(idx)

    def get(self, idx: np.ndarray) -> ReplaySamples:
        """The transitions at slots `idx`, as tensors on the device."""
        def to_device(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, non_blocking=True)

        return ReplaySamples(
            observations=to_device(self.observations[idx]),
            actions=to_device(self.actions[idx]),
            rewards=to_device(self.rewards[idx]),
            next_observations=to_device(self.next_observations[idx]),
            dones=to_device(self.dones[idx]),
        )
