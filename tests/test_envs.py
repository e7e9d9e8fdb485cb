"""Atari preprocessing and episode bookkeeping, pinned against the original agent's defects."""

from dataclasses import replace

import ale_py
import numpy as np
import pytest
from ale_py import roms

from dqn.config import ConfigError, EnvBackend, EnvConfig, EnvKind
from dqn.envs import (
    ActionSubset,
    EpisodeTracker,
    action_count,
    atari_env_kwargs,
    make_vector_env,
)


def raw_ale(game: str) -> ale_py.ALEInterface:
    """A bare emulator stepping one frame at a time, no preprocessing at all."""
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    rom = roms.get_rom_path(game)
    assert rom is not None, game
    ale.loadROM(rom)
    ale.reset_game()
    return ale


def native_resolution_env(cfg: EnvConfig) -> ale_py.AtariVectorEnv:
    """Our env settings, but frames kept at 210x160 so they compare pixel for pixel."""
    kwargs = atari_env_kwargs(cfg) | {"img_height": 210, "img_width": 160}
    return ale_py.AtariVectorEnv(cfg.id, 1, **kwargs)


def test_rewards_are_summed_over_skipped_frames_and_last_two_frames_max_pooled():
    cfg = EnvConfig(id="space_invaders", noop_max=0, fire_reset=False)
    env = native_resolution_env(cfg)
    obs, _ = env.reset(seed=0)
    ale = raw_ale(cfg.id)
    actions = ale.getMinimalActionSet()
    assert np.array_equal(obs[0, -1], ale.getScreenGrayscale())

    rng = np.random.default_rng(0)
    summed = last_frame_only = 0
    pooled_differs_from_last = 0
    for _ in range(300):
        a = int(rng.integers(len(actions)))
        obs, reward, *_ = env.step(np.array([a]))
        frame_rewards, frames = [], []
        for _ in range(cfg.frame_skip):
            frame_rewards.append(ale.act(actions[a]))
            frames.append(ale.getScreenGrayscale())
        assert reward[0] == sum(frame_rewards)
        pooled = np.maximum(frames[-2], frames[-1])
        assert np.array_equal(obs[0, -1], pooled)
        summed += sum(frame_rewards)
        last_frame_only += frame_rewards[-1]
        pooled_differs_from_last += not np.array_equal(pooled, frames[-1])
    env.close()
    # The test would catch the original's bug: scoring only the last skipped frame loses points.
    assert summed > last_frame_only
    # Space Invaders flickers, so max-pooling matters and the comparison above is not vacuous.
    assert pooled_differs_from_last > 0


def test_frames_are_full_range_uint8_not_binarised():
    env = make_vector_env(EnvConfig(id="space_invaders"), num_envs=2)
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        obs, *_ = env.step(np.zeros(2, dtype=np.int64))
    env.close()
    assert obs.dtype == np.uint8 and obs.shape == (2, 4, 84, 84)
    assert obs.max() > 100
    assert len(np.unique(obs)) > 10  # not 0/1 as after the original's float->uint8 cast


def test_life_loss_ends_the_td_target_but_not_the_game():
    """The original reset the game at every life lost and only ever played its first life."""
    env = make_vector_env(EnvConfig(id="space_invaders"), num_envs=1)
    _obs, info = env.reset(seed=3)
    tracker = EpisodeTracker(1, terminal_on_life_loss=True)
    ids, no = np.array([0]), np.array([False])
    assert not tracker.step(ids, np.zeros(1), no, no, info["lives"]).is_transition[0]
    rng = np.random.default_rng(0)
    lives, frame = int(info["lives"][0]), int(info["episode_frame_number"][0])
    life_losses, episode = 0, None
    terminated = np.array([False])
    while episode is None:
        _obs, reward, terminated, truncated, info = env.step(rng.integers(6, size=1))
        outcome = tracker.step(ids, reward, terminated, truncated, info["lives"])
        assert outcome.is_transition[0]
        assert info["episode_frame_number"][0] > frame  # same game, never restarted
        frame = int(info["episode_frame_number"][0])
        if info["lives"][0] < lives:
            life_losses += 1
            assert outcome.dones[0] == 1.0
        elif not terminated[0]:
            assert outcome.dones[0] == 0.0
        lives = int(info["lives"][0])
        if outcome.episodes:
            episode = outcome.episodes[0]
    assert life_losses == 3 and terminated[0]
    assert episode.episode_return > episode.first_life_return  # later lives scored too
    # The step after game over is the autoreset step: a fresh game, not a transition.
    _obs, reward, terminated, truncated, info = env.step(np.zeros(1, dtype=np.int64))
    outcome = tracker.step(ids, reward, terminated, truncated, info["lives"])
    assert not outcome.is_transition[0] and info["lives"][0] == 3
    env.close()


def test_tracker_bootstraps_truncation_and_skips_the_reset_step():
    tracker = EpisodeTracker(2, terminal_on_life_loss=True)
    both, no = np.array([0, 1]), np.array([False, False])
    out = tracker.step(both, np.zeros(2), no, no, np.array([3, 3]))  # the reset: first obs
    assert not out.is_transition.any()
    out = tracker.step(both, np.array([1.0, 2.0]), no, no, np.array([3, 3]))
    assert out.is_transition.all() and not out.episodes
    # env 0 is truncated (frame cap), env 1 loses a life.
    out = tracker.step(both, np.array([5.0, 0.0]), no, np.array([True, False]), np.array([3, 2]))
    assert out.dones.tolist() == [0.0, 1.0]  # truncation bootstraps; life loss does not
    assert [(e.env_index, e.episode_return, e.length) for e in out.episodes] == [(0, 6.0, 2)]
    # Next step: env 0 is on its autoreset step (not a transition), env 1 plays on.
    out = tracker.step(both, np.array([0.0, 4.0]), no, no, np.array([3, 2]))
    assert out.is_transition.tolist() == [False, True]
    # Asynchronous reports name a subset of envs, in any order.
    out = tracker.step(
        np.array([1]), np.array([1.0]), np.array([True]), np.array([False]), np.array([1])
    )
    assert out.dones.tolist() == [1.0] and out.env_ids.tolist() == [1]
    e = out.episodes[0]
    assert (e.env_index, e.episode_return, e.length, e.first_life_return) == (1, 7.0, 4, 2.0)
    out = tracker.step(np.array([1, 0]), np.array([0.0, 2.0]), no, no, np.array([3, 3]))
    assert out.is_transition.tolist() == [False, True]  # env 1 restarts, env 0 plays


def test_action_subset_maps_agent_actions_to_game_actions():
    env = make_vector_env(EnvConfig(id="space_invaders", action_subset=[1, 2, 3, 4, 5]), 2)
    assert isinstance(env, ActionSubset) and action_count(env) == 5
    assert env.actions(np.array([0, 4])).tolist() == [1, 5]
    ale_env = env.unwrapped
    assert isinstance(ale_env, ale_py.AtariVectorEnv)
    game_actions = ale_env.ale.get_action_set()
    assert [game_actions[i] for i in env.table] == [
        ale_py.Action.FIRE,
        ale_py.Action.RIGHT,
        ale_py.Action.LEFT,
        ale_py.Action.RIGHTFIRE,
        ale_py.Action.LEFTFIRE,
    ]
    env.reset(seed=0)
    env.step(np.array([0, 4]))
    env.close()


def test_action_subset_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match=r"env\.action_subset"):
        make_vector_env(EnvConfig(id="space_invaders", action_subset=[1, 7]), 1)


def test_unknown_game_is_a_config_error_naming_the_closest_roms():
    with pytest.raises(ConfigError, match=r"env\.id='space_invader' .*did you mean space_invaders"):
        make_vector_env(EnvConfig(id="space_invader"), 1)
    with pytest.raises(ConfigError, match=r"env\.id='xyzzy' .*such as adventure"):
        make_vector_env(EnvConfig(id="xyzzy"), 1)


def test_classic_env_uses_next_step_autoreset_too():
    env = make_vector_env(EnvConfig(id="CartPole-v1", kind=EnvKind.classic), 1)
    env.reset(seed=0)
    tracker = EpisodeTracker(1, terminal_on_life_loss=True)
    ids, no = np.array([0]), np.array([False])
    tracker.step(ids, np.zeros(1), no, no, None)
    done_seen = False
    for _ in range(600):
        _obs, r, term, trunc, _info = env.step(np.zeros(1, dtype=np.int64))
        out = tracker.step(ids, r, term, trunc, None)
        if done_seen:
            assert not out.is_transition[0]
            break
        done_seen = bool(term[0] or trunc[0])
    assert done_seen
    env.close()


@pytest.mark.parametrize(("game", "fire_reset"), [("space_invaders", False), ("breakout", True)])
def test_gymnasium_path_gives_the_same_steps_as_the_ale_vector_env(game, fire_reset):
    """Same settings, same actions: identical frames, rewards, ends and lives, across resets.
    (No-op starts are off: the two paths draw their no-op counts from different RNGs.)"""
    cfg = EnvConfig(id=game, noop_max=0, fire_reset=fire_reset, max_episode_frames=2000)
    ale_env = make_vector_env(cfg, 2)
    gym_env = make_vector_env(replace(cfg, backend=EnvBackend.gymnasium), 2)
    assert gym_env.single_observation_space == ale_env.single_observation_space
    obs_a, info_a = ale_env.reset(seed=0)
    obs_g, info_g = gym_env.reset(seed=0)
    assert np.array_equal(obs_a, obs_g)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(700):
        actions = rng.integers(action_count(ale_env), size=2)
        obs_a, r_a, term_a, trunc_a, info_a = ale_env.step(actions)
        obs_g, r_g, term_g, trunc_g, info_g = gym_env.step(actions)
        assert np.array_equal(obs_a, obs_g)
        assert np.array_equal(r_a, r_g)
        assert np.array_equal(term_a, term_g) and np.array_equal(trunc_a, trunc_g)
        assert np.array_equal(info_a["lives"], info_g["lives"])
        ends += int((term_a | trunc_a).sum())
    ale_env.close()
    gym_env.close()
    assert ends >= 1  # the comparison went through at least one autoreset
