"""Experience replay that stores each frame once and rebuilds frame stacks at sample time.

Every env writes its own stream of observations into its own ring of slots. A slot holds the
newest frame of one observation (84x84 uint8 on Atari, the whole vector for classic control)
and, once the env has stepped from it, the transition taken there: action, reward, done. The
transition at slot k reads frames k-S+1..k as its observation and k-S+2..k+1 as the next one
(S = frame stack), with the frames before an episode start zeroed, exactly as the env's own
stacks are padded after a reset. So one transition costs one frame (~7 KB on Atari) instead of
the two 28 KB stacks a plain buffer keeps.

Never sampled: a slot whose next frame is not written yet, the final observation of an episode
(no transition starts there), the S-1 oldest slots of each ring, whose history the ring has
overwritten, and, with n-step returns, a transition whose n steps are not all known yet while
its episode goes on (as Dopamine: it would train on a shortened return).
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from dqn.config import AgentConfig, ConfigError
from dqn.returns import importance_weights
from dqn.sumtree import SumTree

log = logging.getLogger(__name__)

GIB = 1024**3
SCALAR_BYTES = 4 + 4 + 1 + 1 + 1  # action int32, reward float32, done, episode start, valid


class ReplaySamples(NamedTuple):
    """A batch of transitions on the learner's device."""

    observations: torch.Tensor
    actions: torch.Tensor  # int64 (batch,)
    rewards: torch.Tensor  # float32 (batch,)
    next_observations: torch.Tensor
    dones: torch.Tensor  # float32 (batch,), 1.0 = do not bootstrap
    discounts: torch.Tensor  # float32 (batch,): gamma ** (steps to the next observation)
    weights: torch.Tensor  # float32 (batch,): importance weights (all 1 for uniform replay)
    indices: np.ndarray  # buffer slots of the transitions (for priorities and tests)
    # With `future_steps` K > 0 (self-predictive representations): the observations 1..K steps
    # after each one (K, batch, ...), the actions taken at steps 0..K-1 (K, batch) and a float
    # mask (K, batch), 1 where step k is still in the sample's episode and stored.
    future_observations: torch.Tensor | None = None
    future_actions: torch.Tensor | None = None
    future_mask: torch.Tensor | None = None


def transition_bytes(frame_shape: tuple[int, ...], frame_dtype: npt.DTypeLike) -> int:
    """Bytes one transition takes in `FrameReplayBuffer`: one frame plus its scalars."""
    return int(np.prod(frame_shape)) * np.dtype(frame_dtype).itemsize + SCALAR_BYTES


def available_memory_bytes() -> int | None:
    """Memory the OS can still give this process (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_capacity(
    buffer_size: int, memory_gib: float, frame_shape: tuple[int, ...], frame_dtype: npt.DTypeLike
) -> int:
    """Transitions to allocate: `buffer_size`, capped by the budget, refused if RAM is short."""
    per_transition = transition_bytes(frame_shape, frame_dtype)
    budget_capacity = int(memory_gib * GIB // per_transition)
    if budget_capacity < 1:
        raise ConfigError(
            f"hw.replay_memory_gib={memory_gib} cannot hold one transition of "
            f"{per_transition} bytes: raise it."
        )
    capacity = min(buffer_size, budget_capacity)
    if capacity < buffer_size:
        log.warning(
            "The replay holds %d transitions, not agent.buffer_size=%d: that is what "
            "hw.replay_memory_gib=%.1f holds at %d bytes each (raise it if memory allows).",
            capacity,
            buffer_size,
            memory_gib,
            per_transition,
        )
    needed = capacity * per_transition
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ConfigError(
            f"The replay buffer needs {needed / GIB:.1f} GiB for {capacity} transitions but only "
            f"{available / GIB:.1f} GiB of memory is available: lower hw.replay_memory_gib or "
            "agent.buffer_size."
        )
    return capacity


class FrameReplayBuffer:
    """Uniform replay over per-env rings of frames; stacks are rebuilt when sampled.

    `obs_shape` is the env's observation: (S, H, W) for stacked frames (`stacked=True`), or any
    shape stored whole (`stacked=False`, e.g. CartPole's (4,)).

    With `n_step` > 1 a sample is an n-step transition: the discounted rewards of up to
    `n_step` steps of the same episode, the observation it reached and `gamma ** steps`. It is
    shorter only where the episode ended (done: no bootstrap) or was truncated (bootstraps from
    the last observation); a transition whose episode goes on is sampled once all its n steps
    are stored (`window_closed`). With `future_steps` K > 0 a sample also carries the K
    observations that followed it, with their actions and a mask (`ReplaySamples`).
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: npt.DTypeLike,
        device: torch.device,
        stacked: bool,
        *,
        n_step: int,
        gamma: float,
        future_steps: int = 0,
    ):
        self.n_step = n_step
        self.future_steps = future_steps
        self.gamma = gamma
        self.max_n_step = n_step  # the longest window `set_horizon` may ask for
        self.stack = obs_shape[0] if stacked else 1
        self.stacked = stacked
        self.frame_shape = tuple(obs_shape[1:]) if stacked else tuple(obs_shape)
        self.num_envs = num_envs
        self.slots_per_env = capacity // num_envs
        needed = self.stack + max(n_step, future_steps) + 1
        if self.slots_per_env < needed:
            raise ConfigError(
                f"A replay of {capacity} transitions split over hw.num_envs={num_envs} envs "
                f"leaves {self.slots_per_env} per env, fewer than {needed}: "
                "raise agent.buffer_size."
            )
        self.capacity = self.slots_per_env * num_envs
        self.device = device
        shape = (num_envs, self.slots_per_env)
        self.frames = np.zeros((*shape, *self.frame_shape), dtype=obs_dtype)
        self.actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.dones = np.zeros(shape, dtype=bool)
        self.episode_start = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)  # a whole transition starts at this slot
        self.pos = np.full(num_envs, -1, dtype=np.int64)  # slot of each env's latest obs
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots filled, up to slots_per_env
        self._torch_dtype = torch.from_numpy(self.frames[:0, :0]).dtype
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None  # when the pinned tensor may be reused

    def __len__(self) -> int:
        """Transitions that can be sampled (about: each episode's final slot is not one)."""
        return int(np.maximum(self.written - self.stack, 0).sum())

    def set_horizon(self, n_step: int, gamma: float) -> None:
        """Sample returns of `n_step` steps discounted by `gamma` from now on (an annealed
        horizon); ValueError above the `n_step` the buffer was built for."""
        if not 1 <= n_step <= self.max_n_step:
            raise ValueError(f"n_step must be in [1, {self.max_n_step}], got {n_step}")
        self.n_step, self.gamma = n_step, gamma

    def _newest_frames(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -1] if self.stacked else obs

    def _write(self, env_ids: np.ndarray, obs: np.ndarray, starts: bool) -> None:
        slots = (self.pos[env_ids] + 1) % self.slots_per_env
        self.frames[env_ids, slots] = self._newest_frames(obs)
        self.episode_start[env_ids, slots] = starts
        self.valid[env_ids, slots] = False
        self.pos[env_ids] = slots
        self.written[env_ids] = np.minimum(self.written[env_ids] + 1, self.slots_per_env)

    def start_episodes(self, env_ids: npt.ArrayLike, obs: np.ndarray) -> None:
        """Record the first observation of new episodes (after a reset) for `env_ids`."""
        self._write(np.asarray(env_ids), obs, starts=True)

    def add(
        self,
        env_ids: npt.ArrayLike,
        actions: npt.ArrayLike,
        rewards: npt.ArrayLike,
        dones: npt.ArrayLike,
        next_obs: np.ndarray,
    ) -> np.ndarray:
        """Complete the transition from each env's latest observation; returns their slots."""
        ids = np.asarray(env_ids)
        slots = self.pos[ids]
        self.actions[ids, slots] = actions
        self.rewards[ids, slots] = rewards
        self.dones[ids, slots] = dones
        self.valid[ids, slots] = True
        self._write(ids, next_obs, starts=False)
        return ids * self.slots_per_env + slots

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> ReplaySamples:
        """Uniformly sample `batch_size` transitions (with replacement); `beta` is unused."""
        return self.get(self.sample_indices(batch_size, rng))

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Slots of `batch_size` uniformly drawn sampleable transitions."""
        ends = np.cumsum(self.written)
        if ends[-1] == 0:
            raise RuntimeError("sample() called on an empty replay buffer")
        out = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        for _ in range(1000):
            draw = rng.integers(0, ends[-1], size=len(todo))
            env = np.searchsorted(ends, draw, side="right")
            age = draw - (ends[env] - self.written[env])  # 0 = the env's oldest slot
            slot = (self.pos[env] - self.written[env] + 1 + age) % self.slots_per_env
            ok = self.valid[env, slot] & (age >= self.stack - 1) & self.window_closed(env, slot)
            out[todo[ok]] = env[ok] * self.slots_per_env + slot[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return out
        raise RuntimeError("no sampleable transition in the replay buffer")

    def window_closed(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Whether the n-step returns of the transitions at (`env`, `slot`) are final: all n
        steps are stored, or the episode ended (a done, or a new game began) within them."""
        ahead = (self.pos[env] - slot) % self.slots_per_env  # steps stored from the slot on
        closed = (ahead >= self.n_step) | self.episode_start[env, self.pos[env]]
        for j in range(self.n_step - 1):
            closed |= (j < ahead) & self.dones[env, (slot + j) % self.slots_per_env]
        return closed

    def get(self, indices: np.ndarray) -> ReplaySamples:
        """The transitions at `indices` with their stacks rebuilt, as tensors on the device."""
        env, slot = np.divmod(indices, self.slots_per_env)
        steps, rewards, dones = self._n_step(env, slot)
        next_slot = (slot + steps) % self.slots_per_env
        # One host tensor holds every stack the batch needs: obs, next obs and, for SPR, the
        # observations after each of the K steps that follow (the stack ending at slot + j + 1).
        k = self.future_steps
        host = self._host_frames((2 + k, len(indices), self.stack, *self.frame_shape))
        stacks = host.numpy()
        self._gather_stack(env, slot, stacks[0])
        self._gather_stack(env, next_slot, stacks[1])
        for j in range(k):
            self._gather_stack(env, (slot + j + 1) % self.slots_per_env, stacks[2 + j])
        # Asynchronous copies only from pinned memory on CUDA: elsewhere (MPS) a non-blocking
        # copy may read host memory after it is freed.
        cuda = self.device.type == "cuda"
        frames = host.to(self.device, non_blocking=cuda)
        if cuda:
            self._copied = torch.cuda.Event()
            self._copied.record(torch.cuda.current_stream(self.device))
        if not self.stacked:
            frames = frames[:, :, 0]

        def to_device(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, dtype)

        batch = ReplaySamples(
            observations=frames[0],
            actions=to_device(self.actions[env, slot], torch.int64),
            rewards=to_device(rewards, torch.float32),
            next_observations=frames[1],
            dones=to_device(dones, torch.float32),
            discounts=to_device(self.gamma**steps, torch.float32),
            weights=torch.ones(len(indices), device=self.device),
            indices=indices,
        )
        if not k:
            return batch
        ahead, alive = self._alive(env, slot, k)
        return batch._replace(
            future_observations=frames[2:],
            future_actions=to_device(self.actions[env[:, None], ahead].T, torch.int64),
            future_mask=to_device(alive.T, torch.float32),
        )

    def _alive(self, env: np.ndarray, slot: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """The slots of the n steps from each sample on (batch, n), and whether each step is
        in the sample's episode: its transition is stored and no earlier step ended a life."""
        ahead = (slot[:, None] + np.arange(n)) % self.slots_per_env
        dones = self.dones[env[:, None], ahead]
        valid = self.valid[env[:, None], ahead]
        alive = np.ones_like(valid)
        for j in range(1, n):
            alive[:, j] = alive[:, j - 1] & ~dones[:, j - 1] & valid[:, j]
        return ahead, alive

    def _n_step(self, env: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, ...]:
        """Steps taken (1..n), discounted reward sums and dones of the n-step transitions."""
        ahead, alive = self._alive(env, slot, self.n_step)
        rewards = self.rewards[env[:, None], ahead]
        dones = self.dones[env[:, None], ahead]
        steps = alive.sum(axis=1)
        returns = (alive * rewards * self.gamma ** np.arange(self.n_step)).sum(axis=1)
        return steps, returns, dones[np.arange(len(slot)), steps - 1]

    def _gather_stack(self, env: np.ndarray, end: np.ndarray, out: np.ndarray) -> None:
        """Write into `out` the stacks of frames ending at slots `end`; a frame is zeroed when a
        later frame of its stack starts an episode (as the env pads its own stacks)."""
        window = (end[:, None] + np.arange(-self.stack + 1, 1)) % self.slots_per_env
        flat = env[:, None] * self.slots_per_env + window
        np.take(self.frames.reshape(-1, *self.frame_shape), flat, axis=0, out=out)
        if self.stack > 1:
            starts = self.episode_start.reshape(-1)[flat[:, 1:]]
            later_start = np.logical_or.accumulate(starts[:, ::-1], axis=1)[:, ::-1]
            out[:, :-1][later_start] = 0

    STATE = ("frames", "actions", "rewards", "dones", "episode_start", "valid", "pos", "written")

    def state_dict(self) -> dict[str, np.ndarray]:
        """The buffer's contents as numpy arrays (for `dqn.checkpoint.save_arrays`)."""
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned; ValueError if it is another buffer's."""
        for name in self.STATE:
            current = getattr(self, name)
            if name not in state or state[name].shape != current.shape:
                found = state[name].shape if name in state else "nothing"
                raise ValueError(f"replay {name}: expected shape {current.shape}, found {found}")
            current[...] = state[name]

    def _host_frames(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Host tensor that sampled frames are gathered into: on CUDA one pinned tensor, reused
        once its previous copy to the GPU has finished; elsewhere a fresh one."""
        if self.device.type != "cuda":
            return torch.empty(shape, dtype=self._torch_dtype)
        if self._copied is not None:
            self._copied.synchronize()
        if self._pinned is None or self._pinned.shape != shape:
            self._pinned = torch.empty(shape, dtype=self._torch_dtype).pin_memory()
        return self._pinned


class PrioritizedFrameReplayBuffer(FrameReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) on the frame-once buffer.

    A sum tree over the buffer's slots holds each transition's priority (|TD error| + eps) **
    alpha; a slot that cannot be sampled (no transition yet, an n-step window still open, an
    episode's last observation, a ring's oldest S-1 slots whose history is overwritten) holds 0.
    A transition enters the tree when it can first be sampled, at the largest priority the
    tree holds then (as Dopamine and Kaixhin's Rainbow), so each is replayed soon; the maximum
    is the current one, so an early outlier, once replayed or overwritten, stops setting it.
    """

    def __init__(self, *args, alpha: float, eps: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(self.capacity)

    def new_priority(self) -> float:
        """The priority a transition enters with: the largest held now (1 in an empty tree)."""
        return self.tree.max or 1.0

    def _write(self, env_ids: np.ndarray, obs: np.ndarray, starts: bool) -> None:
        super()._write(env_ids, obs, starts)
        # The new frame's slot has no transition yet, and the slot S-1 ahead (now the ring's
        # oldest whole stack but one) has lost the first frame of its history.
        slots = self.pos[env_ids]
        stale = [slots] + (
            [(slots + self.stack - 1) % self.slots_per_env] if self.stack > 1 else []
        )
        self.tree.set(np.concatenate([env_ids * self.slots_per_env + s for s in stale]), 0.0)
        self._admit_closed(env_ids)

    def _admit_closed(self, env_ids: np.ndarray) -> None:
        """Give the tree the transitions of `env_ids` that this write made sampleable: among
        the n newest of each env, those whose window just closed and whose whole history is
        still in the ring."""
        ahead = np.arange(1, self.n_step + 1)  # how far behind the newest frame
        env = np.repeat(env_ids, len(ahead))
        behind = np.tile(ahead, len(env_ids))
        slot = (self.pos[env] - behind) % self.slots_per_env
        index = env * self.slots_per_env + slot
        admit = (
            self.valid[env, slot]
            & (self.written[env] - 1 - behind >= self.stack - 1)  # the ring's age of the slot
            & (self.tree.get(index) == 0)  # not in the tree yet
            & self.window_closed(env, slot)
        )
        if admit.any():
            self.tree.set(index[admit], self.new_priority())

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> ReplaySamples:
        """`batch_size` transitions drawn in proportion to priority, with importance weights
        `(N * P(i)) ** -beta` normalised by the batch's largest."""
        indices = self.tree.sample(batch_size, rng)
        probabilities = self.tree.get(indices) / self.tree.total
        weights = importance_weights(probabilities, max(len(self), 1), beta)
        batch = self.get(indices)
        return batch._replace(weights=torch.from_numpy(weights).to(self.device))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The buffer's contents plus the sum tree."""
        return {**super().state_dict(), "tree": self.tree.nodes}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned."""
        super().load_state_dict(state)
        if "tree" not in state or state["tree"].shape != self.tree.nodes.shape:
            raise ValueError("replay tree: the snapshot holds no matching priorities")
        self.tree.nodes[...] = state["tree"]
        self.tree.rebuild()  # sums and maxima follow from the leaves, whatever was saved

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        """Set the priorities of sampled transitions from their new TD errors (or losses)."""
        priorities = (np.abs(errors) + self.eps) ** self.alpha
        still_valid = self.tree.get(indices) > 0  # not overwritten since they were sampled
        self.tree.set(indices[still_valid], priorities[still_valid])


def build_replay(
    agent: AgentConfig,
    capacity: int,
    num_envs: int,
    obs_shape: tuple[int, ...],
    obs_dtype: npt.DTypeLike,
    device: torch.device,
    stacked: bool,
) -> FrameReplayBuffer:
    """The replay `agent` asks for: prioritized or uniform, with its n-step returns and its
    discount (the replay owns `agent.gamma`: a sample's discount is gamma ** steps), and the
    future steps that SPR's loss reads (`agent.spr_steps` when `agent.spr_weight` > 0)."""
    shape = (capacity, num_envs, obs_shape, obs_dtype, device, stacked)
    future_steps = agent.spr_steps if agent.spr_weight else 0
    if agent.prioritized_replay:
        return PrioritizedFrameReplayBuffer(
            *shape,
            n_step=agent.n_step,
            gamma=agent.gamma,
            future_steps=future_steps,
            alpha=agent.priority_alpha,
            eps=agent.priority_eps,
        )
    return FrameReplayBuffer(
        *shape, n_step=agent.n_step, gamma=agent.gamma, future_steps=future_steps
    )
