"""dqn/sumtree.py: the sums at every node, the cumulative intervals `find` walks, stratified
sampling against hand-computed draws, and rebuilding from saved leaves."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from dqn.sumtree import SumTree

# Five items with cumulative-priority intervals [0,1) [1,3) - [3,6) [6,10): total 10.
PRIORITIES = [1.0, 2.0, 0.0, 3.0, 4.0]


class FixedRandom:
    """Stands in for a numpy Generator whose `random` draws are given in advance."""

    def __init__(self, draws: list[float]):
        self.draws = np.array(draws)

    def random(self, size: int) -> np.ndarray:
        """The next `size` draws."""
        assert size == len(self.draws)
        return self.draws


def fixed(draws: list[float]) -> np.random.Generator:
    """A generator whose `random` returns `draws`, for `SumTree.sample`."""
    return cast(np.random.Generator, FixedRandom(draws))


def filled(priorities: list[float] = PRIORITIES) -> SumTree:
    tree = SumTree(len(priorities))
    tree.set(np.arange(len(priorities)), priorities)
    return tree


def test_layout_of_five_items():
    tree = SumTree(5)
    assert (tree.depth, tree.leaves, len(tree.nodes)) == (3, 8, 16)
    assert tree.total == 0.0
    assert (SumTree(1).depth, SumTree(8).depth, SumTree(9).depth) == (1, 3, 4)


def test_every_inner_node_holds_the_sum_of_its_children():
    tree = filled()
    nodes = tree.nodes
    assert nodes[8:16].tolist() == [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0]  # the leaves
    assert nodes[4:8].tolist() == [3.0, 3.0, 4.0, 0.0]  # 1+2, 0+3, 4+0, 0+0
    assert nodes[2:4].tolist() == [6.0, 4.0]
    assert nodes[1] == tree.total == 10.0
    assert tree.get(np.arange(5)).tolist() == PRIORITIES


def test_set_updates_the_path_to_the_root_and_broadcasts_a_scalar():
    tree = filled()
    tree.set(np.array([2]), np.array([5.0]))  # item 2: 0 -> 5
    assert (tree.nodes[5], tree.nodes[2], tree.total) == (8.0, 11.0, 15.0)
    tree.set(np.array([0, 1, 3]), 0.5)
    assert tree.get(np.arange(5)).tolist() == [0.5, 0.5, 5.0, 0.5, 4.0]
    assert tree.total == 10.5


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_set_refuses_negative_and_non_finite_priorities(bad):
    tree = filled()
    with pytest.raises(ValueError, match="finite and >= 0"):
        tree.set(np.array([1]), np.array([bad]))
    assert tree.total == 10.0  # nothing was written


def test_find_maps_values_to_their_intervals():
    tree = filled()
    values = [0.0, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 9.999]
    assert tree.find(np.array(values)).tolist() == [0, 0, 1, 1, 3, 3, 4, 4]


def test_find_never_returns_an_item_without_priority():
    """A value at the very end of the mass walks into empty leaves; the item on its left that
    has mass is returned instead."""
    tree = filled([0.0, 1.0, 0.0, 0.0])
    assert tree.find(np.array([tree.total])).tolist() == [1]


def test_stratified_sample_takes_one_draw_in_each_slice_of_the_mass():
    """Batch 5 of total 10: slice k is [2k, 2k+2); a draw u puts the value at 2k + 2u."""
    tree = filled()
    # values 1, 3, 5, 7, 9 -> items 1, 3, 3, 4, 4
    assert tree.sample(5, fixed([0.5] * 5)).tolist() == [1, 3, 3, 4, 4]
    # values 0, 2, 4, 6, 8 (each slice's start) -> items 0, 1, 3, 4, 4
    assert tree.sample(5, fixed([0.0] * 5)).tolist() == [0, 1, 3, 4, 4]
    # a draw of 1.0 would reach the total itself: it is kept just below it
    assert tree.sample(5, fixed([0.0, 0.0, 0.0, 0.0, 1.0])).tolist()[-1] == 4


def test_slices_that_fit_the_intervals_draw_exactly_in_proportion():
    """Batch 10 of total 10: every slice lies inside one item's interval, so whatever the
    draws, each batch holds item i priority_i times."""
    tree = filled()
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = np.bincount(tree.sample(10, rng), minlength=5)
        assert counts.tolist() == [1, 2, 0, 3, 4]


def test_sampling_proportions_match_the_priorities():
    """Batches of 4 (slices of 2.5 straddling the intervals), seeded: each item's share of
    20,000 draws is within 0.01 of priority / total."""
    tree = filled()
    rng = np.random.default_rng(0)
    items = np.concatenate([tree.sample(4, rng) for _ in range(5_000)])
    shares = np.bincount(items, minlength=5) / len(items)
    np.testing.assert_allclose(shares, np.array(PRIORITIES) / 10.0, atol=0.01)
    assert shares[2] == 0.0


def test_sampling_an_empty_tree_is_an_error():
    with pytest.raises(RuntimeError, match="no priority mass"):
        SumTree(4).sample(2, np.random.default_rng(0))


def test_rebuild_from_the_leaves_gives_the_tree_that_set_builds():
    built = filled()
    restored = SumTree(5)
    restored.nodes[restored.leaves :] = built.nodes[built.leaves :]  # saved leaves, loaded
    assert restored.total == 0.0  # the inner nodes do not know yet
    restored.rebuild()
    np.testing.assert_array_equal(restored.nodes, built.nodes)
    assert restored.sample(5, fixed([0.5] * 5)).tolist() == [1, 3, 3, 4, 4]
