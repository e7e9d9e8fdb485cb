"""dqn/self_prediction.py and the agent's SPR loss: the loss by hand, the action planes of the
transition model, and an agent that learns to predict its own features."""

import numpy as np
import pytest
import torch

from dqn.agent import DQNAgent
from dqn.config import AgentConfig
from dqn.networks import DataEfficientCNN, initial_weights
from dqn.replay import ReplaySamples
from dqn.self_prediction import SelfPredictiveModel, TransitionModel, self_predictive_loss


def test_loss_is_two_minus_twice_the_cosine_summed_over_the_steps_in_the_episode():
    """Two steps of two samples. Sample 0: same direction at both steps (cos 1: 0 + 0).
    Sample 1: orthogonal at step 1 (cos 0: 2), opposite at step 2 (cos -1: 4) but past its
    episode's end, so masked out: 2. Lengths do not matter, only directions."""
    predictions = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]]])
    targets = torch.tensor([[[5.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    losses = self_predictive_loss(predictions, targets, mask)
    torch.testing.assert_close(losses, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(
        self_predictive_loss(predictions, targets, torch.ones(2, 2)), torch.tensor([0.0, 6.0])
    )


def test_transition_model_sees_the_action_as_one_hot_planes():
    """With every weight zero but the centre taps that carry action plane 2 to channel 0 and
    channel 0 on through the second convolution, channel 0 of the next latent is 1 at every
    pixel for samples that took action 2 and 0 for the others."""
    model = TransitionModel(channels=3, n_actions=4)
    first, second = model.layers[0], model.layers[2]
    assert isinstance(first, torch.nn.Conv2d) and isinstance(second, torch.nn.Conv2d)
    with torch.no_grad():
        for conv in (first, second):
            conv.weight.zero_()
            assert conv.bias is not None
            conv.bias.zero_()
        first.weight[0, 3 + 2, 1, 1] = 1.0  # input channels: 3 latent, then actions
        second.weight[0, 0, 1, 1] = 1.0
    latent = torch.rand(3, 3, 5, 5)
    out = model(latent, torch.tensor([2, 0, 2]))
    assert out.shape == (3, 3, 5, 5)
    torch.testing.assert_close(
        out[:, 0], torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 5, 5)
    )
    assert not out[:, 1:].any()


def test_rollout_applies_the_transition_model_once_per_action():
    torch.manual_seed(0)
    model = SelfPredictiveModel(channels=4, n_actions=3, projection_dim=8)
    latent = torch.rand(2, 4, 3, 3)
    actions = torch.tensor([[0, 1], [2, 2], [1, 0]])  # (K=3, batch=2)
    steps = model.rollout(latent, actions)
    assert steps.shape == (3, 2, 4, 3, 3)
    expected = latent
    for k in range(3):
        expected = model.transition(expected, actions[k])
        torch.testing.assert_close(steps[k], expected)


def image_batch(future_steps: int, seed: int = 0) -> ReplaySamples:
    """A batch of 16 random 84x84 stacks whose futures are each the same stack darkened step by
    step: a world simple enough for the transition model to learn."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (16, 4, 84, 84), generator=g, dtype=torch.uint8)
    future = torch.stack([(obs.float() * (1 - 0.15 * k)).to(torch.uint8) for k in range(1, 4)])
    return ReplaySamples(
        observations=obs,
        actions=torch.zeros(16, dtype=torch.int64),
        rewards=torch.zeros(16),
        next_observations=future[0],
        dones=torch.zeros(16),
        discounts=torch.full((16,), 0.99),
        weights=torch.ones(16),
        indices=np.arange(16),
        future_observations=future[:future_steps],
        future_actions=torch.zeros(future_steps, 16, dtype=torch.int64),
        future_mask=torch.ones(future_steps, 16),
    )


@pytest.mark.parametrize("spr_weight", [0.0, 2.0])
def test_the_agent_adds_the_loss_only_when_asked_and_learns_to_predict(spr_weight):
    torch.manual_seed(0)
    cfg = AgentConfig(lr=1e-3, spr_weight=spr_weight, spr_steps=3, target_update_interval=0)
    net = DataEfficientCNN((4, 84, 84), 4, features_dim=32, dueling=True)
    agent = DQNAgent(net, 4, cfg, torch.device("cpu"))
    batch = image_batch(3)
    metrics, _ = agent.update(batch)
    if not spr_weight:
        assert agent.spr is None and "spr_loss" not in metrics
        assert "spr" not in agent.state_dict()
        return
    assert agent.spr is not None
    first = float(metrics["spr_loss"])
    assert 0 < first <= 3 * 4  # three steps of at most 4 each
    before = {k: v.clone() for k, v in agent.spr.state_dict().items()}
    losses = [float(agent.update(batch)[0]["spr_loss"]) for _ in range(60)]
    assert losses[-1] < 0.5 * first
    assert any(not torch.equal(before[k], v) for k, v in agent.spr.state_dict().items())
    again = DQNAgent(
        DataEfficientCNN((4, 84, 84), 4, features_dim=32, dueling=True), 4, cfg, torch.device("cpu")
    )
    again.load_state_dict(agent.state_dict())
    assert again.spr is not None
    for k, v in agent.spr.state_dict().items():
        assert torch.equal(again.spr.state_dict()[k], v)


def test_reset_shrinks_the_self_predictive_model_toward_fresh_weights():
    """Resets move SPR's model as the torso: 0.8 * itself + 0.2 * fresh weights (drawn after
    the Q-network's, from the same seeded generator)."""
    torch.manual_seed(0)
    cfg = AgentConfig(spr_weight=2.0, spr_steps=2, target_update_interval=0)
    net = DataEfficientCNN((4, 84, 84), 3, features_dim=16)
    agent = DQNAgent(net, 3, cfg, torch.device("cpu"))
    assert agent.spr is not None
    before = {k: v.clone() for k, v in agent.spr.named_parameters()}
    torch.manual_seed(1)
    initial_weights(agent.q_net)
    fresh = initial_weights(agent.spr)
    torch.manual_seed(1)
    agent.reset_parameters(0.8)
    for name, param in agent.spr.named_parameters():
        torch.testing.assert_close(param, 0.8 * before[name] + 0.2 * fresh[name])
