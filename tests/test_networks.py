"""dqn/networks.py: output shapes of every torso and head, the uint8 scaling, the dueling sum,
noisy layers and their noise, and the float32 outputs under autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dqn.config import ConfigError
from dqn.networks import (
    MLP,
    DataEfficientCNN,
    NatureCNN,
    NoisyLinear,
    QHead,
    _output_layer,
    build_network,
    reset_noise,
)

ATARI = (4, 84, 84)  # a stack of four 84x84 frames
ACTIONS = 6
HEADS = [
    pytest.param({}, id="plain"),
    pytest.param({"dueling": True}, id="dueling"),
    pytest.param({"noisy": True}, id="noisy"),
    pytest.param({"num_atoms": 51}, id="c51"),
    pytest.param({"dueling": True, "noisy": True, "num_atoms": 51}, id="rainbow"),
]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def frames(batch: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, *ATARI), dtype=torch.uint8)


def expected_shape(batch: int, head: dict) -> tuple[int, ...]:
    atoms = head.get("num_atoms", 1)
    return (batch, ACTIONS) if atoms == 1 else (batch, ACTIONS, atoms)


@pytest.mark.parametrize("head", HEADS)
def test_nature_cnn_output_shapes(head):
    net = NatureCNN(ATARI, ACTIONS, features_dim=32, **head)
    out = net(frames(3))
    assert out.shape == expected_shape(3, head) and out.dtype == torch.float32


@pytest.mark.parametrize("head", HEADS)
def test_mlp_output_shapes(head):
    net = MLP((4,), ACTIONS, hidden_sizes=(16, 8), **head)
    out = net(torch.randn(5, 4))
    assert out.shape == expected_shape(5, head) and out.dtype == torch.float32


def test_nature_cnn_has_the_papers_layers():
    net = NatureCNN(ATARI, ACTIONS)
    convs = [m for m in net.torso if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    hidden, _, output = net.head.q
    assert (hidden.in_features, hidden.out_features) == (64 * 7 * 7, 512)
    assert (output.in_features, output.out_features) == (512, ACTIONS)


def test_data_efficient_cnn_has_the_papers_layers():
    """van Hasselt et al. (2019): two 5x5 convolutions of stride 5, 576 features, 256 units."""
    net = DataEfficientCNN(ATARI, ACTIONS, features_dim=256, dueling=True)
    convs = [m for m in net.torso if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (5, 5), (5, 5)),
        (64, (5, 5), (5, 5)),
    ]
    hidden, _, output = net.head.advantage
    assert (hidden.in_features, hidden.out_features) == (64 * 3 * 3, 256)
    assert (output.in_features, output.out_features) == (256, ACTIONS)
    frames = torch.randint(0, 256, (5, *ATARI), dtype=torch.uint8)
    assert net(frames).shape == (5, ACTIONS)


def test_mlp_with_one_hidden_layer_is_all_head():
    net = MLP((4,), 2, hidden_sizes=(16,))
    assert len(net.torso) == 0
    assert net(torch.randn(2, 4)).shape == (2, 2)


def test_uint8_frames_are_scaled_to_the_unit_interval():
    net = NatureCNN(ATARI, ACTIONS, features_dim=32)
    x = frames(2)
    torch.testing.assert_close(net(x), net(x.float() / 255.0))
    assert not torch.allclose(net(x), net(x.float()))  # floats pass through unscaled


def test_dueling_values_average_to_the_value_stream():
    """Q = V + A - mean_a A, so the mean over actions of Q is V."""
    head = QHead(in_dim=10, hidden=8, n_actions=ACTIONS, dueling=True)
    features = torch.randn(4, 10)
    value = _output_layer(head.value, features)  # (batch, 1)
    torch.testing.assert_close(head(features).mean(dim=1, keepdim=True), value)


def test_dueling_distributions_average_per_atom():
    head = QHead(in_dim=10, hidden=8, n_actions=ACTIONS, dueling=True, num_atoms=5)
    features = torch.randn(4, 10)
    value = _output_layer(head.value, features)  # (batch, atoms)
    torch.testing.assert_close(head(features).mean(dim=1), value)


def test_outputs_stay_float32_under_bfloat16_autocast():
    net = NatureCNN(ATARI, ACTIONS, features_dim=32, dueling=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(frames(2))
    assert out.dtype == torch.float32


def test_noisy_linear_forward_is_the_noisy_weight_matrix_applied():
    """The factorised shortcut gives what the explicit w = mu + sigma * eps would."""
    layer = NoisyLinear(7, 3, std_init=0.5)
    x = torch.randn(4, 7)
    weight = layer.weight_mu + layer.weight_sigma * layer.weight_epsilon
    bias = layer.bias_mu + layer.bias_sigma * layer.noise_out
    torch.testing.assert_close(layer(x), F.linear(x, weight, bias))
    assert torch.equal(layer.weight_epsilon, torch.outer(layer.noise_out, layer.noise_in))


def test_noisy_linear_noise_is_factorised_gaussian():
    """f(x) = sign(x) sqrt(|x|) of standard normals: E[f(x)^2] = E|x| = sqrt(2 / pi)."""
    layer = NoisyLinear(20_000, 1)
    assert layer.noise_in.pow(2).mean().item() == pytest.approx((2 / torch.pi) ** 0.5, rel=0.03)


def test_reset_noise_redraws_every_noisy_layer_and_eval_uses_the_means():
    net = MLP((4,), ACTIONS, hidden_sizes=(16, 8), noisy=True)
    noisy = [m for m in net.modules() if isinstance(m, NoisyLinear)]
    assert len(noisy) == 2  # the head's hidden and output layers
    x = torch.randn(3, 4)
    before = [m.noise_in.clone() for m in noisy]
    train_before = net(x)
    reset_noise(net)
    assert all(not torch.equal(m.noise_in, b) for m, b in zip(noisy, before, strict=True))
    assert not torch.allclose(net(x), train_before)  # new noise, new outputs
    net.eval()
    greedy = net(x)
    reset_noise(net)
    torch.testing.assert_close(net(x), greedy)  # the means alone: noise does not matter


def test_noise_is_drawn_from_torchs_seeded_generator():
    torch.manual_seed(3)
    a = NoisyLinear(5, 2)
    torch.manual_seed(3)
    b = NoisyLinear(5, 2)
    assert torch.equal(a.noise_in, b.noise_in) and torch.equal(a.noise_out, b.noise_out)


def test_reset_noise_leaves_plain_networks_alone():
    net = MLP((4,), 2, hidden_sizes=(8,))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    reset_noise(net)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_build_network_instantiates_the_configured_target():
    cfg = OmegaConf.create({"_target_": "dqn.networks.MLP", "hidden_sizes": [16, 8]})
    net = build_network(cfg, (4,), 2, noisy=True, num_atoms=3)
    assert isinstance(net, MLP) and net(torch.randn(2, 4)).shape == (2, 2, 3)


@pytest.mark.parametrize(
    ("target", "obs_shape", "message"),
    [
        ("dqn.networks.MLP", ATARI, "network: MLP needs vector observations"),
        ("dqn.networks.NatureCNN", (4,), "network: NatureCNN needs image observations"),
    ],
)
def test_a_network_that_does_not_fit_the_observations_is_a_config_error(target, obs_shape, message):
    with pytest.raises(ConfigError) as error:
        build_network(OmegaConf.create({"_target_": target}), obs_shape, 2)
    assert str(error.value).startswith(message) and str(error.value).endswith(".")


@pytest.mark.parametrize("cls", [NatureCNN, DataEfficientCNN])
def test_encode_is_the_torso_before_its_flatten(cls):
    net = cls(ATARI, ACTIONS, features_dim=32, dueling=True)
    x = frames(3)
    latent = net.encode(x)
    assert latent.dim() == 4 and latent.shape[0] == 3
    torch.testing.assert_close(net.head(latent.flatten(1)), net(x))


@pytest.mark.parametrize("dueling", [False, True])
def test_project_is_the_first_layer_of_the_head(dueling):
    head = QHead(10, 7, ACTIONS, dueling=dueling)
    features = torch.randn(4, 10)
    first = head.advantage[0] if dueling else head.q[0]
    torch.testing.assert_close(head.project(features), first(features))
    assert head.project(features).shape == (4, head.hidden) == (4, 7)
