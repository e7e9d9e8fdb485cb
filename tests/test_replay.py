"""The frame-once replay against a naive buffer that stores every stack whole."""

import numpy as np
import pytest
import torch

from dqn.config import AgentConfig, ConfigError
from dqn.replay import (
    FrameReplayBuffer,
    PrioritizedFrameReplayBuffer,
    build_replay,
    plan_capacity,
    transition_bytes,
)
from dqn.returns import n_step_return

CPU = torch.device("cpu")


class NaiveStacker:
    """What an env with zero-padded frame stacks shows the agent."""

    def __init__(self, stack: int, frame_shape: tuple[int, ...]):
        self.stack, self.frame_shape = stack, frame_shape

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.obs = np.zeros((self.stack, *self.frame_shape), dtype=np.uint8)
        self.obs[-1] = frame
        return self.obs.copy()

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.obs = np.concatenate([self.obs[1:], frame[None]])
        return self.obs.copy()


def fill_with_random_episodes(buf, num_envs, steps, stack, frame_shape, seed):
    """Drive `buf` like the collector does, with random interleaving of envs and episode ends
    (a NEXT_STEP reset after each), and record what a naive buffer would hold at each slot:
    the n-step transition (buf.n_step, buf.gamma) that starts there."""
    rng = np.random.default_rng(seed)

    def new_frame():  # every frame unique and never all zeros
        return rng.integers(1, 256, size=frame_shape, dtype=np.uint8)

    stackers = [NaiveStacker(stack, frame_shape) for _ in range(num_envs)]
    obs = np.stack([s.reset(new_frame()) for s in stackers])
    buf.start_episodes(np.arange(num_envs), obs)
    # per env: (slot, obs, a, r, next, done, episode)
    sequences: list[list[tuple]] = [[] for _ in range(num_envs)]
    episode = np.zeros(num_envs, dtype=int)
    ended = np.zeros(num_envs, dtype=bool)
    for _ in range(steps):
        env_ids = np.flatnonzero(rng.random(num_envs) < 0.6)  # envs report in any order
        if len(env_ids) == 0:
            continue
        rng.shuffle(env_ids)
        resetting = env_ids[ended[env_ids]]
        if len(resetting):  # the autoreset step: a new episode's first observation
            buf.start_episodes(
                resetting, np.stack([stackers[e].reset(new_frame()) for e in resetting])
            )
            ended[resetting] = False
            episode[resetting] += 1
        stepping = env_ids[~np.isin(env_ids, resetting)]
        if len(stepping) == 0:
            continue
        before = np.stack([stackers[e].obs.copy() for e in stepping])
        after = np.stack([stackers[e].step(new_frame()) for e in stepping])
        actions = rng.integers(0, 6, size=len(stepping))
        rewards = rng.standard_normal(len(stepping)).astype(np.float32)
        dones = rng.random(len(stepping)) < 0.05
        truncated = ~dones & (rng.random(len(stepping)) < 0.03)
        slots = buf.add(stepping, actions, rewards, dones, after)
        for i, (e, slot) in enumerate(zip(stepping, slots, strict=True)):
            sequences[e].append(
                (int(slot), before[i], actions[i], rewards[i], after[i], dones[i], episode[e])
            )
        ended[stepping] |= dones | truncated
    naive = {}
    for seq in sequences:
        for i, (slot, obs, action, _, _, _, ep) in enumerate(seq):
            ahead = [t for t in seq[i : i + buf.n_step]]
            ahead = ahead[: next((j for j, t in enumerate(ahead) if t[6] != ep), len(ahead))]
            total, steps, done = n_step_return(
                [t[3] for t in ahead], [t[5] for t in ahead], buf.gamma, buf.n_step
            )
            naive[slot] = (obs, action, total, ahead[steps - 1][4], done, buf.gamma**steps)
    return naive


def assert_matches_naive(buf, naive, indices):
    batch = buf.get(indices)
    for row, idx in enumerate(indices):
        obs, action, reward, next_obs, done, discount = naive[int(idx)]
        assert np.array_equal(batch.observations[row].numpy(), obs), idx
        assert np.array_equal(batch.next_observations[row].numpy(), next_obs), idx
        assert int(batch.actions[row]) == action
        assert float(batch.rewards[row]) == pytest.approx(reward, rel=1e-5, abs=1e-6)
        assert float(batch.dones[row]) == float(done)
        assert float(batch.discounts[row]) == pytest.approx(discount)


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("num_envs,capacity,steps", [(1, 60, 40), (3, 90, 400), (4, 400, 3000)])
def test_samples_equal_a_naive_buffer_with_several_envs_and_wraparound(
    num_envs, capacity, steps, n_step
):
    stack, frame_shape = 4, (3, 2)
    buf = FrameReplayBuffer(
        capacity,
        num_envs,
        (stack, *frame_shape),
        np.uint8,
        CPU,
        stacked=True,
        n_step=n_step,
        gamma=0.9,
    )
    naive = fill_with_random_episodes(buf, num_envs, steps, stack, frame_shape, seed=capacity)
    rng = np.random.default_rng(0)
    sampled = np.concatenate([buf.sample_indices(64, rng) for _ in range(200)])
    assert set(sampled.tolist()) <= set(naive)  # never an unfinished or stale transition
    assert_matches_naive(buf, naive, np.unique(sampled))
    # Coverage: nearly every transition still in the rings is reachable.
    assert len(np.unique(sampled)) >= 0.8 * min(len(naive), buf.capacity - num_envs * stack)


def test_stack_never_crosses_episode_start():
    buf = FrameReplayBuffer(32, 1, (4, 1), np.uint8, CPU, stacked=True, n_step=1, gamma=0.99)
    frames = [np.array([v], dtype=np.uint8) for v in range(1, 10)]
    stack = NaiveStacker(4, (1,))
    buf.start_episodes([0], stack.reset(frames[0])[None])
    buf.add([0], [0], [0.0], [False], stack.step(frames[1])[None])
    buf.add([0], [0], [0.0], [True], stack.step(frames[2])[None])  # game over: frame 3 final
    buf.start_episodes([0], stack.reset(frames[3])[None])  # new episode starts with frame 4
    slot = buf.add([0], [1], [1.0], [False], stack.step(frames[4])[None])
    batch = buf.get(slot)
    assert batch.observations[0, :, 0].tolist() == [0, 0, 0, 4]
    assert batch.next_observations[0, :, 0].tolist() == [0, 0, 4, 5]


def test_unfinished_and_final_slots_are_never_sampled():
    buf = FrameReplayBuffer(32, 1, (2, 1), np.uint8, CPU, stacked=True, n_step=1, gamma=0.99)
    stack = NaiveStacker(2, (1,))
    buf.start_episodes([0], stack.reset(np.array([1], np.uint8))[None])
    slots = [
        int(buf.add([0], [0], [0.0], [i == 2], stack.step(np.array([i + 2], np.uint8))[None])[0])
        for i in range(3)
    ]
    buf.start_episodes([0], stack.reset(np.array([9], np.uint8))[None])
    drawn = set(buf.sample_indices(500, np.random.default_rng(0)).tolist())
    assert drawn == set(slots) - {0}  # slot 0 is among the S-1 oldest; 3 is final, 4 unfinished


@pytest.mark.parametrize("prioritized", [False, True])
def test_n_step_transitions_wait_until_their_n_steps_are_known(prioritized):
    """With 3-step returns the two newest transitions of a game in progress are never drawn (a
    shortened return would train them); a done, or a new game after a truncation, closes every
    window before it."""
    agent = AgentConfig(n_step=3, gamma=0.5, prioritized_replay=prioritized)
    buf = build_replay(agent, 32, 1, (1,), np.float32, CPU, stacked=False)
    assert isinstance(buf, PrioritizedFrameReplayBuffer) == prioritized
    rng = np.random.default_rng(0)

    def drawn():
        return set(buf.sample(256, rng).indices.tolist())

    buf.start_episodes([0], np.zeros((1, 1), np.float32))
    slots = [
        int(buf.add([0], [0], [1.0], [False], np.full((1, 1), i, np.float32))[0])
        for i in range(1, 6)
    ]
    assert drawn() == set(slots[:3])
    batch = buf.get(np.array(slots[:3]))
    assert batch.rewards.tolist() == [1.75] * 3 and batch.discounts.tolist() == [0.125] * 3
    slots.append(int(buf.add([0], [0], [1.0], [True], np.full((1, 1), 6, np.float32))[0]))
    assert drawn() == set(slots)  # the game ended: the last three are final at 3, 2, 1 steps
    buf.start_episodes([0], np.zeros((1, 1), np.float32))
    late = [
        int(buf.add([0], [0], [1.0], [False], np.full((1, 1), i, np.float32))[0]) for i in range(2)
    ]
    assert drawn() == set(slots)  # the new game's two transitions wait for their third step
    buf.start_episodes([0], np.zeros((1, 1), np.float32))  # the game was truncated
    assert drawn() == set(slots) | set(late)


def test_a_shorter_horizon_samples_shorter_returns_with_its_discount():
    """set_horizon (BBF's annealing) changes the n-step length and discount of later samples:
    with rewards 1, 2, 4, 8 the 3-step return at gamma 0.5 is 1 + 1 + 1 = 3 (discount 0.125);
    at 2 steps and gamma 0.9 it is 1 + 1.8 = 2.8 (discount 0.81), and a longer window than the
    buffer was built for is refused."""
    buf = build_replay(AgentConfig(n_step=3, gamma=0.5), 32, 1, (1,), np.float32, CPU, False)
    buf.start_episodes([0], np.zeros((1, 1), np.float32))
    first = int(buf.add([0], [0], [1.0], [False], np.ones((1, 1), np.float32))[0])
    for i, reward in enumerate([2.0, 4.0, 8.0], start=2):
        buf.add([0], [0], [reward], [False], np.full((1, 1), i, np.float32))
    batch = buf.get(np.array([first]))
    assert batch.rewards.tolist() == [3.0] and batch.discounts.tolist() == [0.125]
    assert batch.next_observations.tolist() == [[3.0]]
    buf.set_horizon(2, 0.9)
    batch = buf.get(np.array([first]))
    assert batch.rewards.tolist() == [pytest.approx(2.8)]
    assert batch.discounts.tolist() == [pytest.approx(0.81)]
    assert batch.next_observations.tolist() == [[2.0]]
    with pytest.raises(ValueError, match=r"n_step must be in \[1, 3\]"):
        buf.set_horizon(4, 0.9)


def test_vector_observations_are_stored_whole():
    buf = FrameReplayBuffer(10, 2, (4,), np.float32, CPU, stacked=False, n_step=1, gamma=0.99)
    first = np.arange(8, dtype=np.float32).reshape(2, 4)
    buf.start_episodes([0, 1], first)
    slots = buf.add([1, 0], [1, 0], [1.0, 2.0], [False, True], first[::-1] + 100)
    batch = buf.get(slots)
    assert torch.equal(batch.observations, torch.from_numpy(first[::-1].copy()))
    assert torch.equal(batch.next_observations, torch.from_numpy(first[::-1] + 100))
    assert batch.dones.tolist() == [0.0, 1.0]


def test_full_range_uint8_frames_come_back_unchanged():
    buf = FrameReplayBuffer(64, 1, (4, 84, 84), np.uint8, CPU, stacked=True, n_step=1, gamma=0.99)
    rng = np.random.default_rng(0)
    stack = NaiveStacker(4, (84, 84))
    buf.start_episodes([0], stack.reset(rng.integers(0, 256, (84, 84), dtype=np.uint8))[None])
    before, slot = stack.obs.copy(), np.array([0])
    for _ in range(8):
        before = stack.obs.copy()
        slot = buf.add(
            [0],
            [0],
            [0.0],
            [False],
            stack.step(rng.integers(0, 256, (84, 84), dtype=np.uint8))[None],
        )
    batch = buf.get(slot)
    assert batch.observations.dtype == torch.uint8
    assert np.array_equal(batch.observations[0].numpy(), before)
    assert int(batch.observations.max()) == 255 and int(batch.observations.min()) == 0


def test_one_transition_costs_one_frame():
    assert transition_bytes((84, 84), np.uint8) <= 7_200  # vs 28 KB (SB3 optimized), 226 KB


def test_budget_caps_the_capacity():
    per = transition_bytes((84, 84), np.uint8)
    assert plan_capacity(1_000_000, 1.0, (84, 84), np.uint8) == (1024**3) // per
    assert plan_capacity(1_000, 1.0, (84, 84), np.uint8) == 1_000


def test_a_buffer_larger_than_memory_is_refused_before_allocation():
    with pytest.raises(ConfigError, match=r"hw\.replay_memory_gib"):
        plan_capacity(10**12, 100_000.0, (84, 84), np.uint8)


def test_future_steps_carry_the_next_observations_actions_and_a_mask_of_the_episode():
    """One env, vector observations numbered as they come: obs 0, 1, 2 with actions 0, 1, 2,
    the third ending the game (obs 3 its last), then a new game from obs 100 with action 3 to
    obs 101. Three future steps of each transition: the observations after steps 1..3, the
    actions of steps 0..2, and a mask that ends after the step that ended the game or at the
    newest frame."""
    buf = FrameReplayBuffer(
        8, 1, (1,), np.float32, CPU, stacked=False, n_step=1, gamma=0.9, future_steps=3
    )
    buf.start_episodes([0], np.array([[0.0]]))
    for action, obs, done in ((0, 1.0, False), (1, 2.0, False), (2, 3.0, True)):
        buf.add([0], [action], [0.0], [done], np.array([[obs]]))
    buf.start_episodes([0], np.array([[100.0]]))
    buf.add([0], [3], [0.0], [False], np.array([[101.0]]))
    batch = buf.get(np.array([0, 1, 2, 4]))  # slot 3 holds obs 3, where no transition starts
    assert batch.future_observations is not None and batch.future_actions is not None
    assert batch.future_mask is not None
    assert batch.future_observations.shape == (3, 4, 1)  # (steps, batch, obs)
    seen = batch.future_observations[:, :, 0].T.tolist()  # per sample
    assert seen[:3] == [[1, 2, 3], [2, 3, 100], [3, 100, 101]]
    assert seen[3] == [101, 0, 0]  # slot 4's later steps are not written yet
    # Actions of steps 0..2, whatever the slots hold (0 where nothing was taken): the mask
    # keeps the steps that count.
    assert batch.future_actions.T.tolist() == [[0, 1, 2], [1, 2, 0], [2, 0, 3], [3, 0, 0]]
    assert batch.future_mask.T.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]]


def test_build_replay_asks_for_future_steps_only_with_the_self_predictive_loss():
    def replay(**agent):
        cfg = AgentConfig(buffer_size=100, **agent)
        return build_replay(cfg, 100, 1, (4, 8, 8), np.uint8, CPU, stacked=True)

    assert replay(spr_steps=5).future_steps == 0
    assert replay(spr_weight=2.0, spr_steps=5).future_steps == 5
    assert replay(spr_weight=2.0, spr_steps=4, prioritized_replay=True).future_steps == 4
