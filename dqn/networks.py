"""Q-networks: a torso (convolutions or dense layers) and a head that outputs, per action,
either a Q-value (batch, n_actions) or, with `num_atoms` > 1, the logits of a return
distribution over fixed atoms (batch, n_actions, num_atoms). The head may be dueling
(value + advantage streams) and may use noisy linear layers; the network config's `_target_`
picks the torso, the agent's switches pick the head.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from dqn.config import ConfigError

# A NoisyLinear's tensors that only training uses: evaluation acts with the means.
NOISE_PARAMETERS = ("weight_sigma", "bias_sigma", "noise_in", "noise_out")


class NoisyLinear(nn.Module):
    """A linear layer with learned, factorised Gaussian noise on its weights (Fortunato et al.
    2018): w = mu_w + sigma_w * (f(e_out) f(e_in)^T), b = mu_b + sigma_b * f(e_out), with
    f(x) = sign(x) sqrt(|x|). The noise is redrawn by `reset_noise`; in eval mode the layer
    uses the mean weights only.

    Because the noise is an outer product, x w^T = x mu_w^T + ((x * f(e_in)) sigma_w^T) * f(e_out):
    the noisy weight matrix is never built, which saves two passes over it per forward and one
    per backward (the layer is 3136 x 512 in the Atari head).
    """

    noise_in: torch.Tensor  # buffers: f(e_in) and f(e_out), drawn by `reset_noise`
    noise_out: torch.Tensor

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.std_init = std_init
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("noise_in", torch.zeros(in_features))
        self.register_buffer("noise_out", torch.zeros(out_features))
        self.reset_parameters()
        self.reset_noise()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw the initial weights: means uniform in +-1/sqrt(fan-in), scales std_init times
        that bound (Fortunato et al. 2018's factorised initialisation)."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight_mu.uniform_(-bound, bound)
        self.bias_mu.uniform_(-bound, bound)
        self.weight_sigma.fill_(self.std_init * bound)
        self.bias_sigma.fill_(self.std_init * bound)

    @property
    def weight_epsilon(self) -> torch.Tensor:
        """The weight noise f(e_out) f(e_in)^T (for inspection; forward never builds it)."""
        return torch.outer(self.noise_out, self.noise_in)

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Draw new factorised noise (from torch's global generator, so runs are seeded)."""
        for noise in (self.noise_in, self.noise_out):
            x = torch.randn(noise.shape, device=noise.device)
            noise.copy_(x.sign() * x.abs().sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Noisy weights in training mode, mean weights in eval mode."""
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        if not self.training:
            return mean
        noise = F.linear(x * self.noise_in, self.weight_sigma, self.bias_sigma)
        return mean + noise * self.noise_out


class QHead(nn.Module):
    """Hidden layer + output layer mapping torso features to per-action values or logits.

    Dueling (Wang et al. 2016): separate value and advantage streams combined as
    V + A - mean_a(A), per atom when the output is a distribution.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        n_actions: int,
        dueling: bool = False,
        noisy: bool = False,
        num_atoms: int = 1,
        noisy_std: float = 0.5,
    ):
        super().__init__()
        self.n_actions, self.num_atoms, self.dueling = n_actions, num_atoms, dueling
        self.hidden = hidden  # the width of the first layer: SPR's projection

        def linear(i: int, o: int) -> nn.Module:
            return NoisyLinear(i, o, noisy_std) if noisy else nn.Linear(i, o)

        def stream(outputs: int) -> nn.Sequential:
            return nn.Sequential(linear(in_dim, hidden), nn.ReLU(), linear(hidden, outputs))

        if dueling:
            self.value = stream(num_atoms)
            self.advantage = stream(n_actions * num_atoms)
        else:
            self.q = stream(n_actions * num_atoms)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, n_actions) Q-values, or (batch, n_actions, num_atoms) logits, in float32.

        The hidden layers follow any autocast in force; the output layers and the dueling sum
        run in float32. Action gaps are small next to the values themselves: bfloat16 keeps 8
        significant bits, so at |Q| ~ 4 it rounds to steps of 0.03 and V + A would lose A.
        """
        shape = (-1, self.n_actions, self.num_atoms)
        if self.dueling:
            advantage = _output_layer(self.advantage, features).view(shape)
            value = _output_layer(self.value, features).view(-1, 1, self.num_atoms)
            out = value + advantage - advantage.mean(dim=1, keepdim=True)
        else:
            out = _output_layer(self.q, features).view(shape)
        return out.squeeze(-1) if self.num_atoms == 1 else out

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The first layer of the head (the advantage stream's when dueling), before its ReLU:
        SPR's projection of features into the space its predictions are compared in."""
        stream = self.advantage if self.dueling else self.q
        return stream[0](features)


def _output_layer(stream: nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    """A (hidden, ReLU, output) stream with its hidden layer under the caller's autocast and
    its output layer in float32."""
    hidden = stream[1](stream[0](features))
    with torch.autocast(features.device.type, enabled=False):
        return stream[2](hidden.float())


def initial_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """Freshly initialised weights for `module`'s parameters (each layer's own
    `reset_parameters`, from torch's global generator), by name; `module` is left as it is."""
    fresh = copy.deepcopy(module)
    for layer in fresh.modules():
        reset = getattr(layer, "reset_parameters", None)
        if layer is not fresh and callable(reset):
            reset()
    return dict(fresh.named_parameters())


def reset_noise(module: nn.Module) -> None:
    """Redraw the noise of every `NoisyLinear` in `module` (nothing if it has none)."""
    for layer in module.modules():
        if isinstance(layer, NoisyLinear):
            layer.reset_noise()


class NatureCNN(nn.Module):
    """Mnih et al. (2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense `features_dim`, output.

    Takes uint8 frames of shape (stack, height, width) and scales them to [0, 1] itself, so
    the replay buffer keeps 1-byte pixels.
    """

    # (output channels, kernel size, stride) of each convolution, each followed by a ReLU.
    CONVOLUTIONS: tuple[tuple[int, int, int], ...] = ((32, 8, 4), (64, 4, 2), (64, 3, 1))

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        features_dim: int = 512,
        dueling: bool = False,
        noisy: bool = False,
        num_atoms: int = 1,
        noisy_std: float = 0.5,
    ):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(
                f"NatureCNN needs image observations (stack, height, width), got shape "
                f"{tuple(obs_shape)}: use network=mlp for vector observations"
            )
        layers: list[nn.Module] = []
        channels = obs_shape[0]
        for out_channels, kernel, stride in self.CONVOLUTIONS:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride), nn.ReLU()]
            channels = out_channels
        self.torso = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat_dim = self.torso(torch.zeros(1, *obs_shape)).shape[1]
        self.head = QHead(flat_dim, features_dim, n_actions, dueling, noisy, num_atoms, noisy_std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values (or return logits) for a batch of uint8 (or already float) frame stacks."""
        return self.head(self.torso(_scaled(obs)))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The last convolution's features (batch, channels, height, width), before the
        flatten that feeds the head: `head(encode(obs).flatten(1))` is `forward(obs)`."""
        return self.torso[:-1](_scaled(obs))


def _scaled(obs: torch.Tensor) -> torch.Tensor:
    """uint8 pixels scaled to [0, 1]; float input is taken as scaled already."""
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs


class DataEfficientCNN(NatureCNN):
    """Data-efficient Rainbow's smaller torso (van Hasselt et al. 2019): conv 32x5x5/5,
    64x5x5/5, dense `features_dim` (256 there), output. Its two convolutions leave 3x3x64 = 576
    features of an 84x84 input, against the Nature torso's 3136: far cheaper updates."""

    CONVOLUTIONS = ((32, 5, 5), (64, 5, 5))


class MLP(nn.Module):
    """Fully connected ReLU network for flat vector observations; its last hidden layer is
    the head's (so it can be dueling or noisy)."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        hidden_sizes: Sequence[int] = (256, 256),
        dueling: bool = False,
        noisy: bool = False,
        num_atoms: int = 1,
        noisy_std: float = 0.5,
    ):
        super().__init__()
        if len(obs_shape) != 1:
            raise ValueError(
                f"MLP needs vector observations, got shape {tuple(obs_shape)}: "
                "use network=nature_cnn for image observations"
            )
        if len(hidden_sizes) < 1:
            raise ValueError("MLP needs at least one hidden layer (network.hidden_sizes)")
        layers: list[nn.Module] = []
        width = obs_shape[0]
        for hidden in hidden_sizes[:-1]:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.torso = nn.Sequential(*layers)
        self.head = QHead(width, hidden_sizes[-1], n_actions, dueling, noisy, num_atoms, noisy_std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values (or return logits) for a batch of observation vectors."""
        return self.head(self.torso(obs.float()))


def build_network(
    network_cfg: object, obs_shape: Sequence[int], n_actions: int, **head: object
) -> nn.Module:
    """Instantiate the configured network (its `_target_`) for an env's observations; `head`
    passes the agent's head switches (`noisy`, `num_atoms`, `noisy_std`)."""
    try:
        return instantiate(network_cfg, obs_shape=tuple(obs_shape), n_actions=n_actions, **head)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ValueError):
            raise ConfigError(f"network: {cause}.") from None
        raise
