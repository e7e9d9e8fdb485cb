"""Prioritized replay: the sum tree's sampling frequencies, and the prioritized frame buffer
never drawing a transition the uniform one would not."""

import numpy as np
import pytest
import torch
from test_replay import CPU, assert_matches_naive, fill_with_random_episodes

from dqn.replay import PrioritizedFrameReplayBuffer
from dqn.sumtree import SumTree

# Upper 0.1% point of the chi-square distribution with 7 degrees of freedom.
CHI2_7_DOF_999 = 24.32


def chi_square(counts: np.ndarray, expected: np.ndarray) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("stratified", [False, True])
def test_sampling_frequencies_follow_priorities(stratified):
    priorities = np.array([1.0, 0.0, 2.0, 3.0, 0.5, 0.0, 4.0, 1.5, 2.5, 0.25])
    tree = SumTree(len(priorities))  # 10 leaves in a 16-leaf tree
    tree.set(np.arange(len(priorities)), priorities)
    assert tree.total == pytest.approx(priorities.sum())
    rng = np.random.default_rng(0)
    draws = 40_000
    if stratified:
        items = np.concatenate([tree.sample(100, rng) for _ in range(draws // 100)])
    else:
        items = tree.find(rng.random(draws) * tree.total)
    counts = np.bincount(items, minlength=16)
    assert counts[[1, 5]].sum() == 0 and counts[10:].sum() == 0  # no mass, never drawn
    nonzero = priorities > 0
    expected = draws * priorities[nonzero] / priorities.sum()
    assert chi_square(counts[:10][nonzero], expected) < CHI2_7_DOF_999


def test_find_walks_cumulative_intervals():
    tree = SumTree(4)
    tree.set(np.arange(4), [1.0, 2.0, 0.0, 3.0])  # intervals [0,1) [1,3) - [3,6)
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99])).tolist() == [0, 0, 1, 1, 3, 3]


def test_updates_propagate_and_repeated_indices_keep_the_last_value():
    tree = SumTree(5)
    tree.set(np.arange(5), 1.0)
    tree.set(np.array([2, 4, 2]), np.array([10.0, 0.0, 7.0]))
    assert tree.get(np.arange(5)).tolist() == [1.0, 1.0, 7.0, 1.0, 0.0]
    assert tree.total == pytest.approx(10.0)
    with pytest.raises(ValueError):
        tree.set(np.array([0]), np.array([-1.0]))


def sampleable(buf) -> set[int]:
    """Brute force: slots holding a finished transition whose whole history is still there and
    whose n steps are all stored, unless its episode ended before them."""
    out = set()
    for env in range(buf.num_envs):
        oldest = buf.pos[env] - buf.written[env] + 1
        newest = buf.pos[env]
        for slot in range(buf.slots_per_env):
            age = (slot - oldest) % buf.slots_per_env
            if not (age < buf.written[env] and age >= buf.stack - 1 and buf.valid[env, slot]):
                continue
            ahead = (newest - slot) % buf.slots_per_env
            steps = [(slot + j) % buf.slots_per_env for j in range(min(ahead, buf.n_step))]
            ended = buf.episode_start[env, newest] or any(buf.dones[env, k] for k in steps)
            if ahead >= buf.n_step or ended:
                out.add(env * buf.slots_per_env + slot)
    return out


@pytest.mark.parametrize("num_envs,capacity,steps", [(1, 60, 40), (3, 90, 400), (4, 400, 3000)])
def test_prioritized_buffer_draws_exactly_the_sampleable_transitions(num_envs, capacity, steps):
    stack, frame_shape = 4, (3, 2)
    buf = PrioritizedFrameReplayBuffer(
        capacity,
        num_envs,
        (stack, *frame_shape),
        np.uint8,
        CPU,
        stacked=True,
        n_step=3,
        gamma=0.9,
        alpha=0.6,
        eps=1e-6,
    )
    naive = fill_with_random_episodes(buf, num_envs, steps, stack, frame_shape, seed=capacity)
    with_mass = set(np.flatnonzero(buf.tree.get(np.arange(buf.capacity)) > 0).tolist())
    assert with_mass == sampleable(buf)
    rng = np.random.default_rng(0)
    batch = buf.sample(64, rng, beta=0.4)
    assert set(batch.indices.tolist()) <= with_mass
    assert_matches_naive(buf, naive, np.unique(batch.indices))
    assert batch.weights.dtype == torch.float32 and float(batch.weights.max()) == 1.0


def test_priorities_follow_td_errors_and_weights_correct_for_them():
    buf = PrioritizedFrameReplayBuffer(
        64, 1, (4,), np.float32, CPU, stacked=False, n_step=1, gamma=0.99, alpha=1.0, eps=1e-6
    )
    buf.start_episodes([0], np.zeros((1, 4), np.float32))
    slots = np.concatenate(
        [buf.add([0], [0], [0.0], [False], np.full((1, 4), i, np.float32)) for i in range(1, 11)]
    )
    assert np.allclose(buf.tree.get(slots), 1.0)  # new transitions: the largest priority yet
    errors = np.full(10, 1.0)
    errors[3] = 9.0  # one transition with a large TD error: 9 / 18 of the mass
    buf.update_priorities(slots, errors)
    rng = np.random.default_rng(0)
    drawn = np.concatenate([buf.sample(32, rng).indices for _ in range(200)])
    assert abs(np.mean(drawn == slots[3]) - 0.5) < 0.03
    batch = buf.sample(32, rng, beta=1.0)
    weights = batch.weights.numpy()
    heavy = batch.indices == slots[3]
    # (N P)^-1 normalised: the heavy transition (P = 1/2) weighs 1/9 of a light one (P = 1/18).
    assert np.allclose(weights[heavy], 1 / 9, rtol=1e-4) and np.allclose(weights[~heavy], 1.0)
    new = buf.add([0], [0], [0.0], [False], np.full((1, 4), 99, np.float32))
    assert buf.tree.get(new)[0] == pytest.approx(9.0)  # the largest priority held now


def test_new_transitions_get_the_current_largest_priority_not_the_all_time_one():
    """An outlier's priority, once lowered, no longer sets the priority of new transitions."""
    buf = PrioritizedFrameReplayBuffer(
        64, 1, (4,), np.float32, CPU, stacked=False, n_step=1, gamma=0.99, alpha=1.0, eps=1e-6
    )
    buf.start_episodes([0], np.zeros((1, 4), np.float32))

    def add():
        return buf.add([0], [0], [0.0], [False], np.ones((1, 4), np.float32))

    slots = np.concatenate([add() for _ in range(4)])
    buf.update_priorities(slots, np.array([0.5, 100.0, 0.5, 0.5]))  # one outlier
    assert buf.tree.get(add())[0] == pytest.approx(100.0)
    slots = np.concatenate([slots, [slots[-1] + 1]])
    buf.update_priorities(slots, np.array([0.5, 2.0, 0.5, 0.5, 0.5]))  # replayed: error fell
    assert buf.tree.get(add())[0] == pytest.approx(2.0, rel=1e-5)  # the tree's maximum now


def test_sum_tree_keeps_the_current_maximum():
    tree = SumTree(5)
    assert tree.max == 0.0
    tree.set(np.arange(5), [1.0, 7.0, 2.0, 3.0, 0.5])
    assert tree.max == 7.0
    tree.set(np.array([1]), 0.25)
    assert tree.max == 3.0
    tree.set(np.array([3, 3]), np.array([9.0, 1.0]))  # a repeated index keeps its last value
    assert tree.max == 2.0
    tree.maxima[:] = 0.0
    tree.rebuild()
    assert tree.max == 2.0


def test_rebuild_recomputes_the_sums_from_the_leaves():
    tree = SumTree(6)
    tree.set(np.arange(6), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    leaves = tree.nodes[tree.leaves :].copy()
    tree.nodes[:] = 0.0
    tree.nodes[tree.leaves :] = leaves  # e.g. a snapshot saved between a leaf and its parents
    tree.rebuild()
    assert tree.total == pytest.approx(21.0)
    assert tree.find(np.array([0.5, 20.5])).tolist() == [0, 5]
