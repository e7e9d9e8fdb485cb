"""A sum tree in numpy: proportional sampling and priority updates in O(log n), batched.

Leaf i holds the priority of item i; every inner node holds the sum of its two children, so the
root is the total. Drawing a value u in [0, total) and walking down (left when u falls in the
left child's mass, else right with the left mass subtracted) picks item i with probability
priority_i / total. A second array holds the largest priority below each node, so the current
maximum is read at the root too (prioritized replay gives it to new transitions). Every
operation below handles a whole batch of items per tree level.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class SumTree:
    """Priorities of `capacity` items (all 0 at first) in a binary tree of float64 sums."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.depth = max(1, int(np.ceil(np.log2(capacity))))
        self.leaves = 1 << self.depth  # leaf i lives at node leaves + i; the root is node 1
        self.nodes = np.zeros(2 * self.leaves, dtype=np.float64)
        self.maxima = np.zeros(2 * self.leaves, dtype=np.float64)  # same layout, max not sum

    @property
    def total(self) -> float:
        """Sum of all priorities."""
        return float(self.nodes[1])

    @property
    def max(self) -> float:
        """Largest priority held now (0 when empty): overwritten or lowered ones no longer count."""
        return float(self.maxima[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Priorities of items `indices`."""
        return self.nodes[self.leaves + np.asarray(indices)]

    def set(self, indices: npt.ArrayLike, priorities: npt.ArrayLike) -> None:
        """Give items `indices` new priorities (>= 0); a repeated index keeps its last value."""
        nodes = self.leaves + np.asarray(indices, dtype=np.int64)
        priorities = np.broadcast_to(np.asarray(priorities, dtype=np.float64), nodes.shape)
        if np.any(priorities < 0) or not np.all(np.isfinite(priorities)):
            raise ValueError("priorities must be finite and >= 0")
        sums, maxima = self.nodes, self.maxima
        sums[nodes] = priorities
        maxima[nodes] = sums[nodes]  # a repeated index: the value that stayed
        for _ in range(self.depth):  # recompute each changed parent from its two children
            nodes >>= 1  # a parent shared by several items is written several times, same sum
            sums[nodes] = sums[2 * nodes] + sums[2 * nodes + 1]
            maxima[nodes] = np.maximum(maxima[2 * nodes], maxima[2 * nodes + 1])

    def rebuild(self) -> None:
        """Recompute every inner node from the leaves (after loading saved priorities)."""
        self.maxima[self.leaves :] = self.nodes[self.leaves :]
        for level in range(self.depth - 1, -1, -1):
            nodes = np.arange(1 << level, 2 << level)
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            self.maxima[nodes] = np.maximum(self.maxima[2 * nodes], self.maxima[2 * nodes + 1])

    def find(self, values: np.ndarray) -> np.ndarray:
        """Items whose cumulative-priority interval holds each of `values` (in [0, total))."""
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_mass = self.nodes[left]
            go_right = values >= left_mass
            values = np.where(go_right, values - left_mass, values)
            nodes = left + go_right
        items = nodes - self.leaves
        # Rounding can walk into a zero-priority leaf at an interval's edge: step back to the
        # nearest item on the left that has mass (there is one whenever total > 0).
        empty = self.nodes[nodes] <= 0
        if empty.any():
            items[empty] = [self._nearest_with_mass(i) for i in items[empty]]
        return items

    def _nearest_with_mass(self, item: int) -> int:
        leaves = self.nodes[self.leaves : self.leaves + self.capacity]
        left = np.flatnonzero(leaves[: item + 1] > 0)
        return int(left[-1]) if len(left) else int(np.flatnonzero(leaves > 0)[0])

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """`batch_size` items drawn in proportion to priority, one from each of `batch_size`
        equal slices of the total mass (stratified, as in Schaul et al. 2016)."""
        total = self.total
        if total <= 0:
            raise RuntimeError("sample() called on a sum tree with no priority mass")
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        return self.find(np.minimum(bounds, np.nextafter(total, 0)))
