"""The maths, against hand-computed values."""

import numpy as np
import pytest
import torch

from dqn.returns import (
    categorical_projection,
    importance_weights,
    exponential_schedule,
    linear_schedule,
    n_step_return,
    td_target,
    updates_owed,
)


def test_linear_schedule_hand_values():
    assert linear_schedule(1.0, 0.01, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.01, 100, 50) == pytest.approx(0.505)
    assert linear_schedule(1.0, 0.01, 100, 100) == pytest.approx(0.01)
    assert linear_schedule(1.0, 0.01, 100, 10_000) == pytest.approx(0.01)


def test_exponential_schedule_is_floored():
    assert exponential_schedule(1.0, 0.1, 0.5, 0) == 1.0
    assert exponential_schedule(1.0, 0.1, 0.5, 2) == 0.25
    assert exponential_schedule(1.0, 0.1, 0.5, 10) == 0.1
    # The original agent's decay is still above 0.1 after 8M steps: the reason it is not default.
    assert exponential_schedule(1.0, 0.1, 0.99999975, 8_000_000) > 0.13


def test_td_target_dqn_uses_target_max_and_stops_at_done():
    rewards = torch.tensor([1.0, 0.5])
    dones = torch.tensor([0.0, 1.0])
    next_q_target = torch.tensor([[2.0, 3.0], [10.0, 20.0]])
    target = td_target(rewards, dones, 0.9, next_q_target)
    # 1 + 0.9 * 3 = 3.7; the done transition keeps only its reward.
    assert target.tolist() == pytest.approx([3.7, 0.5])


def test_td_target_double_q_values_the_online_argmax_with_the_target_net():
    rewards = torch.tensor([1.0])
    dones = torch.tensor([0.0])
    next_q_target = torch.tensor([[2.0, 3.0]])
    next_q_online = torch.tensor([[5.0, 1.0]])  # online prefers action 0
    target = td_target(rewards, dones, 0.5, next_q_target, next_q_online)
    assert target.tolist() == pytest.approx([1.0 + 0.5 * 2.0])


def test_updates_are_owed_per_train_freq_counted_from_learning_starts():
    assert updates_owed(999, 1000, 3, 1) == 0
    assert updates_owed(1000, 1000, 3, 1) == 0
    assert updates_owed(1002, 1000, 3, 1) == 0
    assert updates_owed(1003, 1000, 3, 1) == 1
    assert updates_owed(1005, 1000, 3, 1) == 1
    assert updates_owed(1256, 1000, 256, 128) == 128
    # Eight envs reporting at once owe the same as one env stepping eight times.
    assert updates_owed(1000 + 8 * 100, 1000, 4, 1) == 200


def test_n_step_return_stops_at_done_and_at_the_end_of_what_was_played():
    # 1 + 0.5 * 2 + 0.25 * 4 = 3, three steps, no done: bootstrap with 0.5 ** 3.
    assert n_step_return([1, 2, 4, 8], [False] * 4, 0.5, 3) == (3.0, 3, False)
    # A done on the second step ends the sum there.
    assert n_step_return([1, 2, 4], [False, True, False], 0.5, 3) == (2.0, 2, True)
    # Only two steps played so far (or truncated after two): a 2-step return that bootstraps.
    assert n_step_return([1, 2], [False, False], 0.5, 3) == (2.0, 2, False)


def test_td_target_takes_per_sample_discounts():
    target = td_target(torch.tensor([3.0, 2.0]), torch.tensor([0.0, 0.0]),
                       torch.tensor([0.125, 0.25]), torch.tensor([[8.0, 0.0], [4.0, 0.0]]))
    assert target.tolist() == pytest.approx([4.0, 3.0])


def test_categorical_projection_hand_values():
    support = torch.tensor([0.0, 1.0, 2.0])
    next_probs = torch.tensor([
        [1.0, 0.0, 0.0],  # all mass at 0, moved to 0.5: split evenly between atoms 0 and 1
        [0.2, 0.3, 0.5],  # episode over: everything lands on the reward, 1
        [0.0, 0.0, 1.0],  # mass at 2, discounted by 0.5 to 1
        [0.2, 0.3, 0.5],  # reward -5 pushes all mass below v_min: clipped onto atom 0
        [0.2, 0.3, 0.5],  # +1 shifts to 1, 2, 3: the 3 is clipped onto atom 2
    ])
    rewards = torch.tensor([0.5, 1.0, 0.0, -5.0, 1.0])
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    discounts = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0])
    target = categorical_projection(rewards, dones, discounts, next_probs, support)
    expected = torch.tensor([
        [0.5, 0.5, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.2, 0.8],
    ])
    assert torch.allclose(target, expected, atol=1e-6)


def test_categorical_projection_keeps_mass_and_the_mean_inside_the_support():
    g = torch.Generator().manual_seed(0)
    support = torch.linspace(-10, 10, 51)
    logits = torch.randn(64, 51, generator=g)
    logits[:, support.abs() > 6] = -torch.inf  # so that no atom is shifted past +-10
    next_probs = torch.softmax(logits, dim=1)
    rewards = torch.rand(64, generator=g) * 2 - 1
    discounts = torch.full((64,), 0.99**3)
    dones = (torch.rand(64, generator=g) < 0.2).float()
    target = categorical_projection(rewards, dones, discounts, next_probs, support)
    assert torch.allclose(target.sum(dim=1), torch.ones(64), atol=1e-5)
    # Where nothing is clipped, the projection keeps the mean: r + discount * (1 - done) E[Z'].
    mean = rewards + discounts * (1 - dones) * (next_probs * support).sum(dim=1)
    assert torch.allclose((target * support).sum(dim=1), mean, atol=1e-4)


def test_importance_weights_hand_values():
    probabilities = np.array([0.5, 0.25, 0.25])
    assert np.allclose(importance_weights(probabilities, 4, 1.0), [0.5, 1.0, 1.0])
    assert np.allclose(importance_weights(probabilities, 4, 0.5), [2**-0.5, 1.0, 1.0])
    assert np.allclose(importance_weights(probabilities, 4, 0.0), [1.0, 1.0, 1.0])
