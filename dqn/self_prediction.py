"""Self-predictive representations (SPR, Schwarzer et al. 2021): an auxiliary loss that makes
the Q-network's convolutional features predict their own future.

From the online features of a sampled observation, a convolutional transition model steps
forward once per action taken, K times; each predicted latent is projected by the first layer
of the Q-head, passed through a linear predictor, and compared by cosine similarity with the
projected features of the observation actually reached k steps later. Targets come from the
online network without gradients: the paper's target encoder with tau = 0, which it uses
whenever the observations are augmented (its Atari setting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def self_predictive_loss(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SPR's loss per sample: sum over the K steps of `mask * ||p/|p| - t/|t|||^2`, which is
    `2 - 2 cos(p, t)`. `predictions` and `targets` are (K, batch, dim), `mask` (K, batch) is 1
    where step k of the sample stays in its episode. Returns (batch,)."""
    cosine = F.cosine_similarity(predictions.float(), targets.float(), dim=-1)
    return ((2.0 - 2.0 * cosine) * mask).sum(dim=0)


class TransitionModel(nn.Module):
    """One step of latent dynamics: the features (batch, C, h, w) and the action, as one-hot
    planes, through two 3x3 convolutions of C channels with ReLUs (SPR's, without its batch
    norm), to the features of the next observation."""

    def __init__(self, channels: int, n_actions: int):
        super().__init__()
        self.n_actions = n_actions
        self.layers = nn.Sequential(
            nn.Conv2d(channels + n_actions, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The next latent for each (latent, action) pair; `actions` is int64 (batch,)."""
        batch, _, height, width = latent.shape
        planes = F.one_hot(actions, self.n_actions).to(latent.dtype)
        planes = planes.view(batch, self.n_actions, 1, 1).expand(-1, -1, height, width)
        return self.layers(torch.cat([latent, planes], dim=1))


class SelfPredictiveModel(nn.Module):
    """SPR's parts that are not the Q-network: the transition model and the linear predictor
    applied to the projected predictions (the projection is the Q-head's first layer)."""

    def __init__(self, channels: int, n_actions: int, projection_dim: int):
        super().__init__()
        self.transition = TransitionModel(channels, n_actions)
        self.predictor = nn.Linear(projection_dim, projection_dim)

    def rollout(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The K predicted latents (K, batch, C, h, w) from `latent` (batch, C, h, w) and the
        actions taken (K, batch)."""
        steps = []
        for step_actions in actions:
            latent = self.transition(latent, step_actions)
            steps.append(latent)
        return torch.stack(steps)
