"""The maths, against hand-computed values."""

import numpy as np
import pytest
import torch

from dqn.returns import (
    annealed_horizon,
    categorical_projection,
    decay_after_hold,
    exponential_schedule,
    importance_weights,
    linear_schedule,
    munchausen_target,
    n_step_return,
    run_progress,
    td_target,
    updates_owed,
)


def test_linear_schedule_hand_values():
    assert linear_schedule(1.0, 0.01, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.01, 100, 50) == pytest.approx(0.505)
    assert linear_schedule(1.0, 0.01, 100, 100) == pytest.approx(0.01)
    assert linear_schedule(1.0, 0.01, 100, 10_000) == pytest.approx(0.01)


def test_run_progress_hand_values():
    assert run_progress(0, 1000) == 0.0
    assert run_progress(250, 1000) == 0.25
    assert run_progress(1000, 1000) == 1.0
    assert run_progress(5000, 1000) == 1.0
    # Resumed at step 400 (progress 0.4) with total_steps raised to 1600: the 1,200 steps left
    # cover the remaining 0.6, so 0.05 per 100 steps, and step 400 itself is unchanged.
    assert run_progress(400, 1600, 400, 0.4) == 0.4
    assert run_progress(1000, 1600, 400, 0.4) == pytest.approx(0.7)
    assert run_progress(1600, 1600, 400, 0.4) == 1.0
    # Resumed after the first total_steps (progress 1): it stays 1.
    assert run_progress(3000, 4000, 2000, 1.0) == 1.0
    # A shorter total_steps than the resume step: done.
    assert run_progress(600, 500, 600, 0.6) == 0.6
    assert run_progress(601, 500, 600, 0.6) == 1.0


def test_schedules_on_run_progress_hand_values():
    # Epsilon over the first 10% of the run, PER beta and the learning rate over all of it.
    assert linear_schedule(1.0, 0.01, 0.1, run_progress(50, 1000)) == pytest.approx(0.505)
    assert linear_schedule(0.4, 1.0, 1.0, run_progress(500, 1000)) == pytest.approx(0.7)
    assert linear_schedule(1e-4, 0.0, 1.0, run_progress(1000, 1600, 400, 0.4)) == pytest.approx(
        3e-5
    )


def test_decay_after_hold_hand_values():
    # Held at 1e-4 for the first 60% of the run, then linearly to 0 over the last 40%.
    assert decay_after_hold(1e-4, 0.6, 0.0) == 1e-4
    assert decay_after_hold(1e-4, 0.6, 0.6) == 1e-4
    assert decay_after_hold(1e-4, 0.6, 0.7) == pytest.approx(7.5e-5)
    assert decay_after_hold(1e-4, 0.6, 0.9) == pytest.approx(2.5e-5)
    assert decay_after_hold(1e-4, 0.6, 1.0) == pytest.approx(0.0)
    # No hold: the plain linear decay over the whole run.
    assert decay_after_hold(1e-4, 0.0, 0.25) == pytest.approx(7.5e-5)


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


def test_annealed_horizon_hand_values():
    # BBF's: n 10 -> 3, gamma 0.97 -> 0.997. Halfway n = round(10 * 0.3 ** 0.5) = round(5.48)
    # and 1 - gamma = 0.03 * 0.1 ** 0.5 = 0.0094868.
    assert annealed_horizon(10, 3, 0.97, 0.997, 0.0) == (10, pytest.approx(0.97))
    n, gamma = annealed_horizon(10, 3, 0.97, 0.997, 0.5)
    assert n == 5 and gamma == pytest.approx(0.9905132, abs=1e-7)
    assert annealed_horizon(10, 3, 0.97, 0.997, 1.0) == (3, pytest.approx(0.997))
    assert annealed_horizon(10, 3, 0.97, 0.997, 7.0) == (3, pytest.approx(0.997))  # held
    assert annealed_horizon(3, 3, 0.99, 0.99, 0.3) == (3, pytest.approx(0.99))  # nothing moves


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
    target = td_target(
        torch.tensor([3.0, 2.0]),
        torch.tensor([0.0, 0.0]),
        torch.tensor([0.125, 0.25]),
        torch.tensor([[8.0, 0.0], [4.0, 0.0]]),
    )
    assert target.tolist() == pytest.approx([4.0, 3.0])


def test_munchausen_target_hand_values():
    # tau = 1: log pi(a=0 | s) for Q(s) = [1, 0] is 1 - log(1 + e) = -0.31326; alpha 0.9 of it
    # is the bonus. Q(s') = [2, 0]: the soft value log(e^2 + 1) = 2.12693.
    q, next_q = torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[2.0, 0.0]] * 2)
    target = munchausen_target(
        torch.tensor([1.0, 1.0]),
        torch.tensor([0.0, 1.0]),
        0.9,
        q,
        torch.tensor([0, 0]),
        next_q,
        tau=1.0,
        alpha=0.9,
        clip=-1.0,
    )
    bonus = 0.9 * (1 - np.log(1 + np.e))
    assert target.tolist() == pytest.approx([1 + bonus + 0.9 * np.log(np.e**2 + 1), 1 + bonus])
    # An unlikely action's bonus is clipped at `clip`: tau * log pi(a=1) = -1.31 < -1.
    clipped = munchausen_target(
        torch.zeros(1), torch.ones(1), 0.9, q[:1], torch.tensor([1]), next_q[:1], 1.0, 0.9, -1.0
    )
    assert clipped.item() == pytest.approx(-0.9)
    # As tau -> 0 with alpha = 0 it is the DQN target: r + discount * max Q(s').
    dqn_like = munchausen_target(
        torch.ones(1), torch.zeros(1), 0.9, q[:1], torch.tensor([0]), next_q[:1], 1e-4, 0.0, -1.0
    )
    assert dqn_like.item() == pytest.approx(1 + 0.9 * 2.0, abs=1e-3)


def test_categorical_projection_hand_values():
    support = torch.tensor([0.0, 1.0, 2.0])
    next_probs = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # all mass at 0, moved to 0.5: split evenly between atoms 0 and 1
            [0.2, 0.3, 0.5],  # episode over: everything lands on the reward, 1
            [0.0, 0.0, 1.0],  # mass at 2, discounted by 0.5 to 1
            [0.2, 0.3, 0.5],  # reward -5 pushes all mass below v_min: clipped onto atom 0
            [0.2, 0.3, 0.5],  # +1 shifts to 1, 2, 3: the 3 is clipped onto atom 2
        ]
    )
    rewards = torch.tensor([0.5, 1.0, 0.0, -5.0, 1.0])
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    discounts = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0])
    target = categorical_projection(rewards, dones, discounts, next_probs, support)
    expected = torch.tensor(
        [
            [0.5, 0.5, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.2, 0.8],
        ]
    )
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
