"""Pure maths of DQN: schedules, TD targets, n-step returns, the C51 projection and
prioritized replay's importance weights, each testable by hand."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def linear_schedule(start: float, end: float, duration_steps: float, step: float) -> float:
    """Value moving linearly from `start` to `end` over `duration_steps`, then held at `end`
    (steps, or a share of the run when both are fractions of `run_progress`)."""
    if duration_steps <= 0:
        return end
    fraction = min(step / duration_steps, 1.0)
    return start + fraction * (end - start)


def decay_after_hold(start: float, hold_fraction: float, progress: float) -> float:
    """`start` held until `hold_fraction` of the run, then linearly down to 0 at its end.

    `progress` is the share of the run done (`run_progress`); a hold of 0 decays from the start.
    """
    return linear_schedule(start, 0.0, 1.0 - hold_fraction, max(0.0, progress - hold_fraction))


def run_progress(
    step: int, total_steps: int, origin_step: int = 0, origin_progress: float = 0.0
) -> float:
    """Share of the run's schedules done at `step`, from 0 at the start to 1 at `total_steps`.

    A run resumed with another `total_steps` continues from where it stood: `origin_progress`
    at `origin_step` (the resume), then linearly to 1 at the new `total_steps`. So the steps
    already taken keep their values and no schedule jumps; only the steps left are re-planned.
    """
    if step <= origin_step:
        return origin_progress
    remaining = total_steps - origin_step
    if remaining <= 0:
        return 1.0
    return min(1.0, origin_progress + (1.0 - origin_progress) * (step - origin_step) / remaining)


def exponential_schedule(start: float, end: float, decay: float, step: int) -> float:
    """`start * decay**step`, floored at `end` (the original agent's epsilon)."""
    return max(end, start * decay**step)


def annealed_horizon(
    n_start: int, n_end: int, gamma_start: float, gamma_end: float, progress: float
) -> tuple[int, float]:
    """BBF's annealed update horizon (Schwarzer et al. 2023): at `progress` (0 to 1, held at 1
    after) the n-step length moves geometrically from `n_start` to `n_end`, rounded to the
    nearest step, and the discount's complement 1 - gamma from 1 - `gamma_start` to
    1 - `gamma_end`, so the horizon 1 / (1 - gamma) grows as geometrically as n shrinks."""
    p = min(max(progress, 0.0), 1.0)
    n = round(n_start * (n_end / n_start) ** p)
    gamma = 1.0 - (1.0 - gamma_start) * ((1.0 - gamma_end) / (1.0 - gamma_start)) ** p
    return int(n), gamma


def updates_owed(env_steps: int, learning_starts: int, train_freq: int, gradient_steps: int) -> int:
    """Gradient steps due after `env_steps`: `gradient_steps` per `train_freq` env steps
    counted from `learning_starts`, so the replay ratio holds whatever the number of envs."""
    if env_steps < learning_starts:
        return 0
    return gradient_steps * ((env_steps - learning_starts) // train_freq)


def n_step_return(
    rewards: list[float], dones: list[bool], gamma: float, n: int
) -> tuple[float, int, bool]:
    """Reference n-step return of one transition: (discounted reward sum, steps, done).

    `rewards[j]`/`dones[j]` are those of the j-th step from the transition on, as far as the
    same episode has gone; the sum stops after `n` steps or at the first done.
    """
    total, steps = 0.0, 0
    for j in range(min(n, len(rewards))):
        total += gamma**j * rewards[j]
        steps += 1
        if dones[j]:
            return total, steps, True
    return total, steps, False


def td_target(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD target `r + discount * (1 - done) * Q_target(s', a*)`.

    For n-step transitions `r` is the discounted sum of their rewards and `discount` is
    `gamma ** steps`; for one step it is `gamma`. `a*` is the target network's argmax (DQN)
    or, when `next_q_online` is given, the online network's argmax (Double DQN). `next_q_*`
    have shape (batch, actions); `dones` is 1.0 where the transition ended the episode for
    learning (never on truncation: that one bootstraps).
    """
    selector = next_q_target if next_q_online is None else next_q_online
    next_actions = selector.argmax(dim=1, keepdim=True)
    next_values = next_q_target.gather(1, next_actions).squeeze(1)
    return rewards + discounts * (1.0 - dones) * next_values


def munchausen_target(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
    q_target: torch.Tensor,
    actions: torch.Tensor,
    next_q_target: torch.Tensor,
    tau: float,
    alpha: float,
    clip: float,
) -> torch.Tensor:
    """Munchausen DQN's target (Vieillard et al. 2020):
    `r + alpha * clip(tau * log pi(a|s), clip, 0) + discount * (1 - done) *
    sum_a' pi(a'|s') * (Q(s', a') - tau * log pi(a'|s'))`, with `pi = softmax(Q / tau)` and Q
    the target network's. The bootstrap is the soft maximum `tau * logsumexp(Q(s') / tau)`.
    `q_target` and `next_q_target` are (batch, actions); `actions` the actions taken."""
    log_pi = F.log_softmax(q_target / tau, dim=1).gather(1, actions[:, None]).squeeze(1)
    bonus = alpha * (tau * log_pi).clamp(clip, 0.0)
    next_log_pi = F.log_softmax(next_q_target / tau, dim=1)
    next_value = (next_log_pi.exp() * (next_q_target - tau * next_log_pi)).sum(dim=1)
    return rewards + bonus + discounts * (1.0 - dones) * next_value


def categorical_projection(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
    next_probs: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """C51's target distribution (Bellemare et al. 2017): the next state's distribution
    `next_probs` (batch, atoms) over the evenly spaced `support`, moved to
    `r + discount * (1 - done) * z`, clipped to the support's ends and split between the two
    nearest atoms in proportion to closeness. Returns (batch, atoms) probabilities.
    """
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (len(support) - 1)
    discounts = torch.as_tensor(discounts, dtype=rewards.dtype, device=rewards.device)
    shifted = rewards[:, None] + (discounts * (1.0 - dones))[:, None] * support[None, :]
    position = (shifted.clamp(v_min, v_max) - v_min) / delta  # (batch, atoms) in atom units
    atoms = torch.arange(len(support), device=support.device, dtype=position.dtype)
    # Atom j receives 1 - |position - j| of each source atom's mass, if that is positive.
    share = (1.0 - (position[:, :, None] - atoms[None, None, :]).abs()).clamp(min=0.0)
    return (next_probs[:, :, None] * share).sum(dim=1)


def importance_weights(probabilities: np.ndarray, size: int, beta: float) -> np.ndarray:
    """Prioritized replay's correction `(size * P(i)) ** -beta`, divided by the batch's largest
    weight so that updates only ever shrink (Schaul et al. 2016)."""
    weights = (size * np.asarray(probabilities, dtype=np.float64)) ** -beta
    return (weights / weights.max()).astype(np.float32)
