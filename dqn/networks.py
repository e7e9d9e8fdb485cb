"""Q-networks. Each takes `(obs_shape, n_actions, ...)` and maps a batch of observations to
Q-values of shape (batch, n_actions); the network config's `_target_` picks the class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NatureCNN(nn.Module):
    """Mnih et al. (2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense `features_dim`, linear head.

    Takes uint8 frames of shape (stack, height, width) and scales them to [0, 1] itself, so
    the replay buffer keeps 1-byte pixels.
    """

    def __init__(self, obs_shape: Sequence[int], n_actions: int, features_dim: int = 512):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(
                f"NatureCNN needs image observations (stack, height, width), got shape "
                f"{tuple(obs_shape)}: use network=mlp for vector observations"
            )
        channels = obs_shape[0]
        self.torso = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat_dim = self.torso(torch.zeros(1, *obs_shape)).shape[1]
        self.head = nn.Sequential(
            nn.Linear(flat_dim, features_dim), nn.ReLU(), nn.Linear(features_dim, n_actions)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values for a batch of uint8 (or already float) frame stacks."""
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs
        return self.head(self.torso(x))


class DuelingHead(nn.Module):
    """Wang et al. (2016): Q = V + A - mean(A), from a value and an advantage stream."""

    def __init__(self, in_dim: int, hidden: int, n_actions: int):
        super().__init__()
        self.value = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.advantage = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_actions)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Q-values from torso features."""
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


class DuelingCNN(NatureCNN):
    """The Nature torso with a dueling head (a value and an advantage stream of
    `features_dim` units each)."""

    def __init__(self, obs_shape: Sequence[int], n_actions: int, features_dim: int = 512):
        super().__init__(obs_shape, n_actions, features_dim)
        flat_dim = self.head[0].in_features
        self.head = DuelingHead(flat_dim, features_dim, n_actions)


class MLP(nn.Module):
    """Fully connected ReLU network for flat vector observations."""

    def __init__(
        self, obs_shape: Sequence[int], n_actions: int, hidden_sizes: Sequence[int] = (256, 256)
    ):
        super().__init__()
        if len(obs_shape) != 1:
            raise ValueError(
                f"MLP needs vector observations, got shape {tuple(obs_shape)}: "
                "use network=nature_cnn for image observations"
            )
        layers: list[nn.Module] = []
        width = obs_shape[0]
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values for a batch of observation vectors."""
        return self.net(obs.float())


def build_network(network_cfg: object, obs_shape: Sequence[int], n_actions: int) -> nn.Module:
    """Instantiate the configured network (its `_target_`) for an env's observations."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from dqn.config import ConfigError

    try:
        return instantiate(network_cfg, obs_shape=tuple(obs_shape), n_actions=n_actions)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ValueError):
            raise ConfigError(f"network: {cause}.") from None
        raise
