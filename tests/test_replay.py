"""The replay buffer keeps frames exactly, wraps around, and refuses what memory cannot hold."""

import numpy as np
import pytest
import torch

from dqn.config import ConfigError
from dqn.replay import ReplayBuffer, plan_capacity, transition_bytes

SHAPE = (4, 84, 84)


def frames(n: int, start: int) -> np.ndarray:
    """Distinct full-range uint8 stacks: every value 0..255 appears."""
    return ((np.arange(n * np.prod(SHAPE)).reshape(n, *SHAPE) + start) % 256).astype(np.uint8)


def test_stores_uint8_frames_unchanged_and_samples_them_back():
    buf = ReplayBuffer(10, SHAPE, np.uint8, torch.device("cpu"))
    obs, next_obs = frames(3, 0), frames(3, 7)
    buf.add(obs, np.array([0, 1, 2]), np.array([1.0, -1.0, 0.0]), next_obs,
            np.array([0.0, 1.0, 0.0]))
    batch = buf.get(np.array([0, 1, 2]))
    assert batch.observations.dtype == torch.uint8
    assert torch.equal(batch.observations, torch.from_numpy(obs))
    assert torch.equal(batch.next_observations, torch.from_numpy(next_obs))
    assert int(batch.observations.max()) == 255 and int(batch.observations.min()) == 0
    assert batch.actions.tolist() == [0, 1, 2] and batch.dones.tolist() == [0.0, 1.0, 0.0]


def test_ring_buffer_wraps_around_overwriting_the_oldest():
    buf = ReplayBuffer(4, (1,), np.float32, torch.device("cpu"))
    for step in range(6):
        buf.add(np.array([[step]]), np.array([step]), np.array([0.0]), np.array([[step + 1]]),
                np.array([0.0]))
    assert len(buf) == 4
    assert sorted(buf.actions.tolist()) == [2, 3, 4, 5]
    batch = buf.sample(64, np.random.default_rng(0))
    assert set(batch.actions.tolist()) <= {2, 3, 4, 5}
    assert torch.equal(batch.next_observations[:, 0], batch.actions.float() + 1)


def test_transition_bytes_is_uint8_not_float():
    # 2 stacks of 4x84x84 bytes, not the original's 2 x 4 x 84 x 84 x 4-byte floats (226 KB).
    assert transition_bytes(SHAPE, np.uint8) == 2 * 28_224 + 16


def test_budget_caps_the_capacity():
    per = transition_bytes(SHAPE, np.uint8)
    assert plan_capacity(1_000_000, 1.0, SHAPE, np.uint8) == (1024**3) // per
    assert plan_capacity(1_000, 1.0, SHAPE, np.uint8) == 1_000


def test_a_buffer_larger_than_memory_is_refused_before_allocation():
    with pytest.raises(ConfigError, match="hw.replay_memory_gib"):
        plan_capacity(10**9, 100_000.0, SHAPE, np.uint8)
