"""The agent acts epsilon-greedily and its update fits a fixed batch."""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dqn.agent import DQNAgent
from dqn.config import AgentConfig, Loss
from dqn.networks import MLP, NatureCNN
from dqn.replay import ReplaySamples, build_replay


def make_agent(**overrides) -> DQNAgent:
    torch.manual_seed(0)
    cfg = AgentConfig(lr=1e-3, **overrides)
    return DQNAgent(MLP((3,), 2, hidden_sizes=[32]), 2, cfg, torch.device("cpu"))


def fixed_batch() -> ReplaySamples:
    g = torch.Generator().manual_seed(0)
    return ReplaySamples(
        observations=torch.randn(32, 3, generator=g),
        actions=torch.randint(0, 2, (32,), generator=g),
        rewards=torch.ones(32),
        next_observations=torch.randn(32, 3, generator=g),
        dones=torch.ones(32),  # targets are the rewards: a regression the net can fit
        discounts=torch.full((32,), 0.5),
        weights=torch.ones(32),
        indices=np.arange(32),
    )


def test_epsilon_zero_is_greedy_and_epsilon_one_is_uniform():
    agent = make_agent()
    obs = np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32)
    rng = np.random.default_rng(0)
    assert np.array_equal(agent.act(obs, 0.0, rng), agent.greedy_actions(obs))
    random_actions = agent.act(obs, 1.0, rng)
    assert 200 < (random_actions == 0).sum() < 300
    greedy = agent.greedy_actions(obs)
    mixed = agent.act(obs, 0.2, rng)  # about 10% differ: half the random picks hit greedy
    assert 25 < (mixed != greedy).sum() < 80


def test_update_fits_a_fixed_batch_and_target_sync_copies_weights():
    agent = make_agent()
    batch = fixed_batch()
    first = float(agent.update(batch)[0]["td_loss"])
    last = first
    for _ in range(300):
        last = float(agent.update(batch)[0]["td_loss"])
    assert last < 0.05 * first
    assert not torch.equal(agent.q_net.head.q[0].weight, agent.target_net.head.q[0].weight)
    agent.sync_target()
    assert torch.equal(agent.q_net.head.q[0].weight, agent.target_net.head.q[0].weight)


def test_update_reports_the_action_gap_of_the_batch_states():
    """The action gap is the best minus the second-best Q-value (not the spread to the worst),
    averaged over the batch, from the network as it was before the step."""
    torch.manual_seed(0)
    agent = DQNAgent(MLP((3,), 3, hidden_sizes=[32]), 3, AgentConfig(), torch.device("cpu"))
    batch = fixed_batch()
    with torch.no_grad():
        q = agent.q_net(batch.observations).sort(dim=1, descending=True).values
    expected = (q[:, 0] - q[:, 1]).mean()
    assert float(expected) < float((q[:, 0] - q[:, 2]).mean())
    metrics, _ = agent.update(batch)
    assert float(metrics["action_gap"]) == pytest.approx(float(expected), rel=1e-5)


def replay_batch(cfg: AgentConfig) -> ReplaySamples:
    """32 one-step transitions sampled from the replay `cfg` asks for, so that `cfg.gamma`
    reaches the batch's discounts the way a run's does."""
    replay = build_replay(cfg, 64, 1, (3,), np.float32, torch.device("cpu"), stacked=False)
    g = np.random.default_rng(0)
    replay.start_episodes([0], g.standard_normal((1, 3)).astype(np.float32))
    for _ in range(33):
        obs = g.standard_normal((1, 3)).astype(np.float32)
        replay.add([0], [int(g.integers(2))], [1.0], [False], obs)
    return replay.get(np.arange(32))


@pytest.mark.parametrize("double_q", [False, True])
def test_update_regresses_on_the_td_target_of_its_variant(double_q):
    """The loss of an update is the squared error to the target built here by hand, with the
    discount the config's gamma gives (0.5 here; through the replay, as in a run)."""
    agent = make_agent(double_q=double_q, gamma=0.5, loss=Loss.mse)
    agent.target_net.head.q[-1].bias.data += torch.tensor([0.0, 3.0])  # target net != online
    batch = replay_batch(agent.cfg)
    assert batch.discounts.tolist() == [0.5] * 32 and batch.dones.tolist() == [0.0] * 32
    with torch.no_grad():
        q = agent.q_net(batch.observations).gather(1, batch.actions[:, None]).squeeze(1)
        next_target = agent.target_net(batch.next_observations)
        chooser = agent.q_net(batch.next_observations) if double_q else next_target
        next_value = next_target.gather(1, chooser.argmax(1, keepdim=True)).squeeze(1)
        expected = ((q - (batch.rewards + 0.5 * next_value)) ** 2).mean()
    assert float(agent.update(batch)[0]["td_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_munchausen_update_regresses_on_its_target_built_here_by_hand():
    """Target: r + alpha * clip(tau * log softmax(Q_target(s) / tau)[a], -1, 0) + discount *
    tau * logsumexp(Q_target(s') / tau), the soft value written differently than in the code."""
    agent = make_agent(munchausen=True, munchausen_tau=0.5, loss=Loss.mse)
    agent.target_net.head.q[-1].bias.data += torch.tensor([0.0, 3.0])  # target net != online
    batch = fixed_batch()._replace(dones=torch.zeros(32))
    with torch.no_grad():
        taken = batch.actions[:, None]
        q = agent.q_net(batch.observations).gather(1, taken).squeeze(1)
        log_pi = torch.log_softmax(agent.target_net(batch.observations) / 0.5, dim=1)
        bonus = 0.9 * (0.5 * log_pi.gather(1, taken).squeeze(1)).clamp(-1.0, 0.0)
        soft_value = 0.5 * torch.logsumexp(agent.target_net(batch.next_observations) / 0.5, dim=1)
        expected = ((q - (batch.rewards + bonus + 0.5 * soft_value)) ** 2).mean()
    assert float(agent.update(batch)[0]["td_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_random_shift_update_trains_on_shifted_frames():
    """With agent.random_shift_pad the update sees shifted stacks: two agents with the same
    weights and batch, one shifting, take different steps; the shifting one still learns."""
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8)
    batch = fixed_batch()._replace(
        observations=frames,
        next_observations=frames.roll(1, dims=0),
        actions=torch.zeros(32).long(),
    )
    losses = []
    for pad in (0, 4):
        torch.manual_seed(0)
        cfg = AgentConfig(lr=1e-4, random_shift_pad=pad)
        agent = DQNAgent(NatureCNN((4, 84, 84), 6), 6, cfg, torch.device("cpu"))
        losses.append([float(agent.update(batch)[0]["td_loss"]) for _ in range(30)])
    assert losses[0][0] == pytest.approx(losses[1][0], rel=0.2)  # same weights, similar start
    assert losses[0] != losses[1]
    assert losses[1][-1] < losses[1][0]


def test_nature_cnn_scales_uint8_frames_inside():
    net = NatureCNN((4, 84, 84), 6)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert torch.allclose(net(frames), net(frames.float() / 255.0))


@pytest.mark.parametrize("rainbow", [False, True])
def test_bf16_autocast_and_channels_last_update_on_cpu(rainbow):
    """The reduced-precision path the GPU hw groups use, exercised on the CPU, for DQN and
    for the Rainbow head (dueling, noisy, C51)."""
    from dqn.config import Precision

    torch.manual_seed(0)
    switches: dict[str, Any] = (
        dict(distributional=True, noisy_nets=True, prioritized_replay=True) if rainbow else {}
    )
    cfg = AgentConfig(double_q=True, **switches)
    net = NatureCNN((4, 84, 84), 6, dueling=rainbow, **cfg.head_kwargs())
    agent = DQNAgent(net, 6, cfg, torch.device("cpu"), Precision.bf16, channels_last=True)
    g = torch.Generator().manual_seed(0)
    batch = ReplaySamples(
        observations=torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=g),
        actions=torch.randint(0, 6, (8,), generator=g),
        rewards=torch.ones(8),
        next_observations=torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=g),
        dones=torch.zeros(8),
        discounts=torch.full((8,), 0.99),
        weights=torch.rand(8, generator=g),
        indices=np.arange(8),
    )
    last = agent.q_net.head.advantage[2].weight_mu if rainbow else agent.q_net.head.q[2].weight
    before = last.clone()
    metrics, priorities = agent.update(batch)
    assert torch.isfinite(metrics["td_loss"])
    assert priorities.shape == (8,) and bool((priorities >= 0).all())
    assert not torch.equal(before, last)
    assert last.dtype == torch.float32  # master weights stay fp32
    assert agent.greedy_actions(batch.observations.numpy()).shape == (8,)


def test_bf16_autocast_keeps_small_action_gaps():
    """Q = V + A - mean(A) with V = 4 and a 0.001 advantage for action 1: bfloat16 rounds 4.001
    to 4.0 (steps of 0.03 there), so the head must add the streams in float32."""
    from dqn.config import Precision

    net = NatureCNN((4, 84, 84), 6, dueling=True)
    value_out, advantage_out = net.head.value[2], net.head.advantage[2]
    assert isinstance(value_out, nn.Linear) and isinstance(advantage_out, nn.Linear)
    with torch.no_grad():
        value_out.bias.fill_(4.0)
        advantage_out.weight.zero_()
        advantage_out.bias.copy_(torch.tensor([0.0, 1e-3, 0.0, 0.0, 0.0, 0.0]))
    agent = DQNAgent(net, 6, AgentConfig(), torch.device("cpu"), Precision.bf16)
    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    with agent._autocast():
        q = net(torch.as_tensor(frames))
    assert q.dtype == torch.float32
    assert torch.allclose(q[:, 1] - q[:, 0], torch.full((3,), 1e-3), atol=1e-5)
    assert agent.greedy_actions(frames).tolist() == [1, 1, 1]


@pytest.mark.slow
def test_compiled_update_matches_eager():
    """hw.compile_mode (CUDA graphs on GPUs) runs the same update; checked eager vs compiled."""
    eager, compiled = make_agent(), make_agent()
    compiled_agent = DQNAgent(
        compiled.q_net, 2, compiled.cfg, torch.device("cpu"), compile_mode="default"
    )
    batch = fixed_batch()._replace(dones=torch.zeros(32))
    for _ in range(3):
        loss_eager = float(eager.update(batch)[0]["td_loss"])
        loss_compiled = float(compiled_agent.update(batch)[0]["td_loss"])
        assert loss_compiled == pytest.approx(loss_eager, rel=1e-4)


def test_dueling_q_values_average_to_the_state_value():
    net = NatureCNN((4, 84, 84), 6, dueling=True)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    q = net(frames)
    features = net.torso(frames.float() / 255.0)
    assert q.shape == (3, 6)
    assert torch.allclose(q.mean(dim=1, keepdim=True), net.head.value(features), atol=1e-5)


def test_noisy_linear_noise_is_factorised_and_off_in_eval_mode():
    from dqn.networks import NoisyLinear

    torch.manual_seed(0)
    layer = NoisyLinear(5, 3)
    x = torch.randn(4, 5)
    assert torch.linalg.matrix_rank(layer.weight_epsilon) == 1  # f(e_out) f(e_in)^T
    noisy = layer(x)
    layer.reset_noise()
    assert not torch.allclose(noisy, layer(x))  # new noise, new outputs
    layer.eval()
    assert torch.allclose(layer(x), x @ layer.weight_mu.T + layer.bias_mu)


def test_distributional_update_fits_a_fixed_batch():
    torch.manual_seed(0)
    cfg = AgentConfig(
        lr=1e-3,
        distributional=True,
        num_atoms=21,
        v_min=-2.0,
        v_max=2.0,
        noisy_nets=True,
        double_q=True,
    )
    agent = DQNAgent(
        MLP((3,), 2, hidden_sizes=[32], dueling=True, **cfg.head_kwargs()),
        2,
        cfg,
        torch.device("cpu"),
    )
    batch = fixed_batch()  # every transition ends with reward 1: Z is 1 with certainty
    first = float(agent.update(batch)[0]["td_loss"])
    metrics, priorities = agent.update(batch)
    for _ in range(999):
        metrics, priorities = agent.update(batch)
    assert float(metrics["td_loss"]) < 0.2 * first
    assert float(metrics["q_values"]) == pytest.approx(1.0, abs=0.1)
    assert priorities.shape == (32,)


def test_soft_sync_moves_the_target_tau_of_the_way_to_the_online_weights():
    agent = make_agent(tau=0.25)
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.fill_(1.0)
        for p in agent.target_net.parameters():
            p.fill_(-3.0)
    agent.sync_target()
    for p in agent.target_net.parameters():  # -3 + 0.25 * (1 - -3) = -2
        assert torch.allclose(p, torch.full_like(p, -2.0))
    agent.sync_target()
    for p in agent.target_net.parameters():  # -2 + 0.25 * 3 = -1.25
        assert torch.allclose(p, torch.full_like(p, -1.25))


@pytest.mark.parametrize("double_q", [False, True])
def test_without_a_target_network_targets_bootstrap_from_the_online_one(double_q):
    """agent.target_update_interval=0: the TD target is r + discount * Q_online(s', a*), a*
    the online argmax, whatever Double-Q says (both choices are the online network's)."""
    agent = make_agent(target_update_interval=0, double_q=double_q, loss=Loss.mse)
    assert agent.target_net is agent.q_net
    batch = fixed_batch()._replace(dones=torch.zeros(32))
    with torch.no_grad():
        next_q = agent.q_net(batch.next_observations)
        target = batch.rewards + batch.discounts * next_q.max(dim=1).values
        q_taken = agent.q_net(batch.observations)[torch.arange(32), batch.actions]
    _, priorities = agent.update(batch)
    assert torch.allclose(priorities, (target - q_taken).abs(), atol=1e-6)
    before = [p.clone() for p in agent.q_net.parameters()]
    agent.sync_target()  # nothing to copy
    assert all(torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters(), strict=True))
    assert "target_net" in agent.state_dict()


@pytest.mark.parametrize(
    "precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)], ids=["fp32", "bf16"]
)
def test_intensity_augmentation_trains_on_scaled_frames(monkeypatch, precision, dtype):
    """With agent.intensity_scale the update sees each stack scaled by its own factor, in the
    dtype its autocast computes in."""
    import dqn.agent
    from dqn.config import Precision

    original, seen = dqn.agent.random_intensity, []

    def recording(frames, scale, out_dtype):
        out = original(frames, scale, out_dtype)
        seen.append((frames, out))
        return out

    monkeypatch.setattr(dqn.agent, "random_intensity", recording)
    torch.manual_seed(0)
    cfg = AgentConfig(intensity_scale=0.05)
    net = NatureCNN((4, 84, 84), 3, features_dim=16)
    agent = DQNAgent(net, 3, cfg, torch.device("cpu"), Precision(precision))
    frames = torch.full((8, 4, 84, 84), 200, dtype=torch.uint8)
    batch = ReplaySamples(
        frames,
        torch.zeros(8, dtype=torch.int64),
        torch.zeros(8),
        frames,
        torch.ones(8),
        torch.full((8,), 0.99),
        torch.ones(8),
        np.arange(8),
    )
    agent.update(batch)
    assert len(seen) == 2  # observations and next observations, each on its own
    for raw, out in seen:
        factors = out[:, 0, 0, 0].float() / (200 / 255)
        # within 1 +- 0.1, give or take bfloat16's roundings of factor / 255 and of the product
        # (2^-8 relative each)
        slack = 0.0 if dtype == torch.float32 else 1.1 * 2**-7
        low, high = 0.9 - slack, 1.1 + slack
        assert out.dtype == dtype and torch.all((factors >= low) & (factors <= high))
        assert torch.allclose(out.float(), factors[:, None, None, None] * raw.float() / 255)


@pytest.mark.parametrize("shrink", [1.0, 0.5, 0.0])
def test_reset_draws_the_head_afresh_and_shrinks_the_torso_toward_fresh_weights(shrink):
    """Shrink and perturb: head <- fresh, torso <- shrink * torso + (1 - shrink) * fresh (the
    fresh weights drawn here from the same seed), Adam's moments gone, target synced."""
    from dqn.networks import initial_weights

    torch.manual_seed(0)
    net = MLP((3,), 2, hidden_sizes=[16, 8])  # a torso layer 3 -> 16 and a head 16 -> 8 -> 2
    agent = DQNAgent(net, 2, AgentConfig(lr=1e-3), torch.device("cpu"))
    for _ in range(5):
        agent.update(fixed_batch())
    before = {k: v.clone() for k, v in net.named_parameters()}
    assert agent.optimizer.state
    torch.manual_seed(7)
    fresh = {k: v.detach().clone() for k, v in initial_weights(net).items()}
    torch.manual_seed(7)
    agent.reset_parameters(shrink)
    for name, param in net.named_parameters():
        keep = shrink if name.startswith("torso.") else 0.0
        expected = keep * before[name] + (1 - keep) * fresh[name]
        assert torch.allclose(param, expected, atol=1e-6), name
    assert not torch.equal(
        dict(net.named_parameters())["head.q.0.weight"], before["head.q.0.weight"]
    )
    assert not agent.optimizer.state
    for mine, target in zip(net.parameters(), agent.target_net.parameters(), strict=True):
        assert torch.equal(mine, target)
    agent.update(fixed_batch())  # Adam starts over without complaint


def test_weight_decay_is_decoupled_from_the_adam_step():
    """AdamW: with the same first gradient, decay only subtracts lr * decay * theta."""
    plain, decayed = make_agent(), make_agent(weight_decay=0.1)
    before = [p.detach().clone() for p in decayed.q_net.parameters()]
    plain.update(fixed_batch())
    decayed.update(fixed_batch())
    for p0, a, b in zip(before, plain.q_net.parameters(), decayed.q_net.parameters(), strict=True):
        assert torch.allclose(b, a - 1e-3 * 0.1 * p0, atol=1e-7)
