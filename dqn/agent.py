"""The DQN agent: online and target Q-networks, acting, and the TD update, with the Rainbow
components as switches (Double-Q targets, n-step returns from the replay, prioritized-replay
weights, noisy nets, C51 return distributions), Munchausen targets, DrQ's augmentations and
SPR's self-predictive loss."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dqn.augmentation import random_intensity, random_shift
from dqn.config import AgentConfig, ConfigError, Loss, Precision
from dqn.networks import initial_weights, reset_noise
from dqn.replay import ReplaySamples
from dqn.returns import categorical_projection, munchausen_target, td_target
from dqn.self_prediction import SelfPredictiveModel, self_predictive_loss

AUTOCAST_DTYPES = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}


class DQNAgent:
    """DQN and its Rainbow extensions on any Q-network from `dqn.networks`.

    With `cfg.distributional` the network outputs return logits over `cfg.num_atoms` atoms
    and Q-values are their expectations; the loss is the cross-entropy to the projected
    target distribution. Otherwise the loss is Huber (or MSE) to the TD target.
    """

    def __init__(
        self,
        q_net: nn.Module,
        n_actions: int,
        cfg: AgentConfig,
        device: torch.device,
        precision: Precision = Precision.fp32,
        channels_last: bool = False,
        compile_mode: str | None = None,
    ):
        self.cfg = cfg
        self.n_actions = n_actions
        self.device = device
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Module.to takes memory_format (PyTorch's documentation); its type stubs leave it out.
        self.q_net = q_net.to(device, memory_format=self.memory_format)  # type: ignore[call-overload]
        # agent.target_update_interval=0: no separate target network; TD targets bootstrap
        # from the online network (DrQ(eps)'s target period of one update), which also lets
        # Double-Q's choice of the next action reuse the same forward pass.
        self.shared_target = cfg.target_update_interval == 0
        self.target_net = (
            self.q_net if self.shared_target else copy.deepcopy(self.q_net).requires_grad_(False)
        )
        # The update's forward passes, compiled when asked (CUDA graphs: "reduce-overhead").
        self.online_fn, self.target_fn = self.q_net, self.target_net
        if compile_mode is not None:
            self.online_fn = torch.compile(self.q_net, mode=compile_mode)
            self.target_fn = (
                self.online_fn
                if self.shared_target
                else torch.compile(self.target_net, mode=compile_mode)
            )
        # SPR's transition model and predictor, trained with the Q-network by one optimizer.
        self.spr = self._self_predictive_model(n_actions) if cfg.spr_weight else None
        self.trained_parameters = list(self.q_net.parameters())
        if self.spr is not None:
            self.trained_parameters += list(self.spr.parameters())
        # The fused Adam kernel: one pass over the parameters, faster than multi-tensor Adam on
        # the CPU (docs/performance.md). Other devices: multi-tensor.
        fused = device.type in ("cuda", "cpu")
        # With agent.weight_decay, AdamW's decoupled decay (Loshchilov & Hutter 2019; BBF).
        self.optimizer = torch.optim.AdamW(
            self.trained_parameters,
            lr=cfg.lr,
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
            fused=fused,
            foreach=not fused,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == Precision.fp16)
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, device=device)

    def _self_predictive_model(self, n_actions: int) -> SelfPredictiveModel:
        """SPR's model for this Q-network: as many channels as its last convolution, as wide
        as its head's first layer (the projection)."""
        convolutions = [m for m in self.q_net.modules() if isinstance(m, nn.Conv2d)]
        if not convolutions or not hasattr(self.q_net, "encode"):
            raise ConfigError(
                "agent.spr_weight needs a convolutional network over image observations "
                "(network=nature_cnn, dueling_cnn or der_cnn): set agent.spr_weight=0."
            )
        channels = convolutions[-1].out_channels
        model = SelfPredictiveModel(channels, n_actions, self.q_net.head.hidden)
        return model.to(self.device)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the networks' convolutions and linear layers run in (autocast's)."""
        return AUTOCAST_DTYPES.get(self.precision, torch.float32)

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=self.compute_dtype, enabled=self.precision in AUTOCAST_DTYPES
        )

    def _prepare(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.contiguous(memory_format=self.memory_format) if obs.dim() == 4 else obs

    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Q-values (batch, actions) from the network's outputs (expected returns for C51)."""
        if self.cfg.distributional:
            return (outputs.float().softmax(dim=-1) * self.support).sum(dim=-1)
        return outputs

    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a) for a batch of observations."""
        with torch.inference_mode(), self._autocast():
            x = self._prepare(torch.as_tensor(obs, device=self.device))
            return self.q_values(self.q_net(x)).argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations."""
        n = len(obs)
        if epsilon >= 1.0:
            return rng.integers(0, self.n_actions, size=n)
        actions = self.greedy_actions(obs)
        explore = rng.random(n) < epsilon
        actions[explore] = rng.integers(0, self.n_actions, size=int(explore.sum()))
        return actions

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Act with the mean weights of noisy layers (no exploration noise) inside the block."""
        self.q_net.eval()
        try:
            yield
        finally:
            self.q_net.train()

    def update(self, batch: ReplaySamples) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One gradient step on a batch. Returns detached metrics (loss, mean Q of the actions
        taken, mean action gap: best minus second-best Q of the batch's states) and each
        transition's new priority signal (|TD error|, or the C51 loss), all left on the device
        (no host sync)."""
        if self.cfg.noisy_nets:
            reset_noise(self.q_net)
            if not self.shared_target:
                reset_noise(self.target_net)
        obs, next_obs = self._augment(batch.observations, batch.next_observations)
        next_online: torch.Tensor | None = None  # Double-Q's choice of the next action
        q_target: torch.Tensor | None = None  # Munchausen's log-policy of the actions taken
        latent: torch.Tensor | None = None  # SPR's start: the torso's features of obs
        with self._autocast():
            if self.spr is not None:
                latent = self.q_net.encode(obs)
                outputs = self.q_net.head(latent.flatten(1)).float()
            else:
                outputs = self.online_fn(obs).float()
            with torch.no_grad():
                if self.cfg.munchausen:  # the target net on both, in one pass
                    both = self.target_fn(torch.cat([obs, next_obs])).float()
                    q_target, next_target = both[: len(obs)], both[len(obs) :]
                else:
                    next_target = self.target_fn(next_obs).float()
                if self.cfg.double_q:  # a second online pass, without gradients: one pass
                    # over obs and next obs together would run the backward over both halves,
                    # 0.8x the speed on a CPU (docs/performance.md)
                    next_online = (
                        next_target if self.shared_target else self.online_fn(next_obs).float()
                    )
        rows = torch.arange(len(batch.actions), device=self.device)
        if self.cfg.distributional:
            with torch.no_grad():
                selector = next_target if next_online is None else next_online
                next_actions = self.q_values(selector).argmax(dim=1)
                next_probs = next_target[rows, next_actions].softmax(dim=-1)
                target = categorical_projection(
                    batch.rewards, batch.dones, batch.discounts, next_probs, self.support
                )
            log_probs = outputs[rows, batch.actions].log_softmax(dim=-1)
            losses = -(target * log_probs).sum(dim=-1)
            q_taken = (log_probs.exp() * self.support).sum(dim=-1)
            priorities = losses
        else:
            if q_target is not None:
                target = munchausen_target(
                    batch.rewards,
                    batch.dones,
                    batch.discounts,
                    q_target,
                    batch.actions,
                    next_target,
                    self.cfg.munchausen_tau,
                    self.cfg.munchausen_alpha,
                    self.cfg.munchausen_clip,
                )
            else:
                target = td_target(
                    batch.rewards, batch.dones, batch.discounts, next_target, next_online
                )
            q_taken = outputs[rows, batch.actions]
            if self.cfg.loss == Loss.huber:
                losses = F.smooth_l1_loss(q_taken, target, reduction="none")
            else:
                losses = F.mse_loss(q_taken, target, reduction="none")
            priorities = (target - q_taken).abs()
        loss = (batch.weights * losses).mean()
        spr_loss: torch.Tensor | None = None
        if latent is not None:
            spr_loss = self._self_predictive_loss(latent, batch).mean()
            loss = loss + self.cfg.spr_weight * spr_loss

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.trained_parameters, self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            top2 = self.q_values(outputs.detach()).topk(2, dim=1).values
        metrics = {
            "td_loss": loss.detach(),
            "q_values": q_taken.detach().mean(),
            "action_gap": (top2[:, 0] - top2[:, 1]).mean(),
        }
        if spr_loss is not None:
            metrics["spr_loss"] = spr_loss.detach()
        return metrics, priorities.detach()

    def _augment(self, *batches: torch.Tensor) -> list[torch.Tensor]:
        """DrQ's augmentations of batches of sampled frame stacks, each stack its own draw, in
        the network's memory format; vector observations pass unchanged."""
        out = list(batches)
        if out[0].dim() == 4:
            if self.cfg.random_shift_pad:
                out = [random_shift(x, self.cfg.random_shift_pad) for x in out]
            if self.cfg.intensity_scale:
                # Scaled straight into the autocast dtype: the first convolution casts to it
                # anyway, and a float32 batch would cost a copy and a cast (docs/performance.md).
                out = [
                    random_intensity(x, self.cfg.intensity_scale, self.compute_dtype) for x in out
                ]
        return [self._prepare(x) for x in out]

    def _self_predictive_loss(self, latent: torch.Tensor, batch: ReplaySamples) -> torch.Tensor:
        """SPR's loss per sample (`dqn.self_prediction`): the transition model rolls `latent`
        forward through the actions taken; each step, projected and predicted, is compared with
        the projected features of the (augmented) observation reached, computed without
        gradients."""
        assert self.spr is not None and batch.future_observations is not None
        assert batch.future_actions is not None and batch.future_mask is not None
        steps, size = batch.future_actions.shape
        (future,) = self._augment(batch.future_observations.flatten(0, 1))
        head = self.q_net.head
        with self._autocast():
            with torch.no_grad():
                targets = head.project(self.q_net.encode(future).flatten(1))
            predicted = self.spr.rollout(latent, batch.future_actions)
            predictions = self.spr.predictor(head.project(predicted.flatten(2)))
        return self_predictive_loss(predictions, targets.view(steps, size, -1), batch.future_mask)

    def reset_noise(self) -> None:
        """Draw new noise for the online network's noisy layers (the acting noise)."""
        reset_noise(self.q_net)

    @torch.no_grad()
    def reset_parameters(self, shrink: float) -> None:
        """Shrink and perturb (Ash & Adams 2020), as SR-SPR and BBF reset: the head's weights
        are drawn afresh, the torso's move to `shrink * theta + (1 - shrink) * theta_fresh`
        (1 keeps the torso, as the primacy-bias resets of the last layers), Adam's moments
        start over, and the target network takes the new weights."""
        fresh = initial_weights(self.q_net)
        for name, param in self.q_net.named_parameters():
            keep = shrink if name.startswith("torso.") else 0.0
            param.lerp_(fresh[name], 1.0 - keep)
        if self.spr is not None:  # SPR's model is shrunk like the torso, as BBF's
            fresh = initial_weights(self.spr)
            for name, param in self.spr.named_parameters():
                param.lerp_(fresh[name], 1.0 - shrink)
        self.optimizer.state.clear()
        if not self.shared_target:
            self.target_net.load_state_dict(self.q_net.state_dict())

    def set_lr(self, lr: float) -> None:
        """Set the optimizer's learning rate (for schedules)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def sync_target(self) -> None:
        """Move the target network to the online one: a copy with `agent.tau` = 1, else
        Polyak averaging, target <- tau * online + (1 - tau) * target (buffers copied)."""
        if self.shared_target:
            return
        if self.cfg.tau == 1.0:
            self.target_net.load_state_dict(self.q_net.state_dict())
            return
        target = list(self.target_net.parameters())
        torch._foreach_lerp_(target, list(self.q_net.parameters()), self.cfg.tau)
        for mine, theirs in zip(self.target_net.buffers(), self.q_net.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        """Networks, optimizer and gradient-scaler state (tensors and plain containers only)."""
        state = {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.spr is not None:
            state["spr"] = self.spr.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.spr is not None:
            self.spr.load_state_dict(state["spr"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
