"""The collector with real ALE envs: what the replay rebuilds is what the envs showed."""

import numpy as np
import pytest
import torch

from dqn.collector import Collector
from dqn.config import EnvConfig
from dqn.envs import action_count, make_vector_env
from dqn.replay import FrameReplayBuffer


class RecordingReplay(FrameReplayBuffer):
    """A replay that also remembers which slots each `add` filled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.added: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, env_ids, actions, rewards, dones, next_obs):
        slots = super().add(env_ids, actions, rewards, dones, next_obs)
        self.added.append((slots, np.array(env_ids)))
        return slots


@pytest.mark.parametrize("batch_size", [0, 2])  # synchronous, and asynchronous in pairs
def test_replay_rebuilds_exactly_the_stacks_the_envs_returned(batch_size):
    num_envs = 4
    envs = make_vector_env(EnvConfig(id="breakout"), num_envs, batch_size)
    replay = RecordingReplay(
        20_000, num_envs, (4, 84, 84), np.uint8, torch.device("cpu"), True, n_step=1, gamma=0.99
    )
    collector = Collector(envs, replay, terminal_on_life_loss=True, clip_rewards=True)
    rng = np.random.default_rng(0)
    obs, env_ids = collector.reset(seed=0)
    latest = {}  # env id -> the observation the env last showed
    for i, e in enumerate(env_ids):
        latest[int(e)] = obs[i]
    expected = {}  # slot -> (obs, action, next_obs)
    # env id -> the action last sent to it (async results arrive rounds later)
    sent: dict[int, int] = {}
    games = 0
    for _ in range(1500):
        actions = rng.integers(action_count(envs), size=len(env_ids))
        collector.send(env_ids, actions)
        sent.update(zip(env_ids.tolist(), actions.tolist(), strict=True))
        replay.added.clear()
        obs, env_ids, outcome = collector.recv()
        games += len(outcome.episodes)
        for slots, ids in replay.added:
            for slot, e in zip(slots.tolist(), ids.tolist(), strict=True):
                row = env_ids.tolist().index(e)
                expected[slot] = (latest[e], sent[e], obs[row])
        for i, e in enumerate(env_ids.tolist()):
            latest[e] = obs[i]
    envs.close()
    assert games >= 2  # resets happened, so zero-padded stacks were checked too
    slots = np.array(sorted(expected))
    batch = replay.get(slots)
    for row, slot in enumerate(slots.tolist()):
        want_obs, want_action, want_next = expected[slot]
        assert np.array_equal(batch.observations[row].numpy(), want_obs)
        assert np.array_equal(batch.next_observations[row].numpy(), want_next)
        assert int(batch.actions[row]) == want_action
