"""dqn/video.py: the best counted game kept as a browser mp4, the agent's-view GIF, and the GIF
encoder. Tiny stand-in screens keep it fast; tests/test_evaluate.py films a real game."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from dqn.video import AgentViewGif, BestGameVideo, atari_screens, encode_gif


class Screen:
    """Stands in for an ALE interface: a 16x20 screen of one colour, set by the test."""

    def __init__(self) -> None:
        self.colour = (0, 0, 0)

    def getScreenRGB(self) -> np.ndarray:
        """The current screen, (height, width, 3) uint8."""
        return np.full((16, 20, 3), self.colour, dtype=np.uint8)


def gymnasium_envs(screens: list[Screen]) -> gym.vector.VectorEnv:
    """What `atari_screens` reads of a gymnasium-backend vector env: one copy per screen."""
    copies = [SimpleNamespace(unwrapped=SimpleNamespace(ale=screen)) for screen in screens]
    return cast(gym.vector.VectorEnv, SimpleNamespace(unwrapped=SimpleNamespace(envs=copies)))


def play(video: BestGameVideo, screen: Screen, env: int, colour: tuple, steps: int) -> None:
    screen.colour = colour
    for _ in range(steps):
        video.capture(np.zeros(2), np.array([env]))


def read_mp4(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    reader = imageio.get_reader(path)
    meta, frames = reader.get_meta_data(), [np.asarray(f) for f in reader.iter_data()]
    reader.close()
    return meta, frames


def test_atari_screens_needs_one_python_env_per_copy():
    screens = [Screen(), Screen()]
    assert atari_screens(gymnasium_envs(screens)) == screens
    ale_backend = cast(gym.vector.VectorEnv, SimpleNamespace(unwrapped=SimpleNamespace()))
    with pytest.raises(ValueError, match="gymnasium backend"):
        atari_screens(ale_backend)


def test_the_best_counted_game_is_kept_as_a_browser_mp4(tmp_path):
    screens = [Screen(), Screen()]
    path = tmp_path / "videos" / "best.best.mp4"
    video = BestGameVideo(gymnasium_envs(screens), path, fps=10, scale=2)
    play(video, screens[0], 0, (200, 0, 0), steps=3)  # red game, return 5
    play(video, screens[1], 1, (0, 200, 0), steps=4)  # green game, return 9: the best
    video.finish(0, 5.0, counted=True)
    video.finish(1, 9.0, counted=True)
    play(video, screens[0], 0, (0, 0, 200), steps=2)  # blue game, return 50, not counted
    video.finish(0, 50.0, counted=False)
    play(video, screens[1], 1, (200, 200, 200), steps=2)  # unfinished when evaluation ends
    video.close()

    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .part files left
    meta, frames = read_mp4(path)
    assert meta["codec"] == "h264" and meta["fps"] == 10
    assert len(frames) == 4 and frames[0].shape == (32, 40, 3)  # scaled 2x, in colour
    red, green, blue = frames[0].reshape(-1, 3).mean(axis=0)
    assert green > 150 and red < 50 and blue < 50


def test_a_lower_counted_game_does_not_replace_the_best(tmp_path):
    screen = Screen()
    path = tmp_path / "best.mp4"
    video = BestGameVideo(gymnasium_envs([screen]), path, fps=10, scale=1)
    play(video, screen, 0, (0, 0, 200), steps=2)
    video.finish(0, 7.0, counted=True)
    play(video, screen, 0, (200, 0, 0), steps=3)
    video.finish(0, 2.0, counted=True)
    video.close()
    _, frames = read_mp4(path)
    assert len(frames) == 2 and frames[0].shape == (16, 20, 3)
    assert frames[0][..., 2].mean() > 150  # the blue game


def test_agent_view_keeps_env_0s_first_game_only():
    gif = AgentViewGif(max_frames=100)
    stacks = np.arange(3 * 4 * 2 * 2, dtype=np.uint8).reshape(3, 4, 2, 2)  # 3 envs' stacks
    gif.capture(stacks, np.array([0, 1, 2]))
    gif.capture(stacks[1:], np.array([1, 2]))  # env 0 did not report
    gif.capture(stacks[:1], np.array([0]))
    gif.finish(1, 3.0, counted=True)  # another env's game: env 0 goes on
    gif.capture(stacks[:1], np.array([0]))
    gif.finish(0, 3.0, counted=True)
    gif.capture(stacks, np.array([0, 1, 2]))  # env 0's second game: not kept
    assert len(gif.frames) == 3
    assert all(np.array_equal(frame, stacks[0, -1]) for frame in gif.frames)  # newest frame


def test_agent_view_stops_at_max_frames():
    gif = AgentViewGif(max_frames=5)
    for _ in range(8):
        gif.capture(np.zeros((1, 4, 2, 2), dtype=np.uint8), np.array([0]))
    assert len(gif.frames) == 5


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 3)])
def test_encode_gif_round_trips_grey_and_colour_frames(shape):
    frames = [np.full(shape, 60 * i, dtype=np.uint8) for i in range(3)]
    data = encode_gif(frames, fps=20)
    assert data.startswith(b"GIF89a")
    reader = imageio.get_reader(io.BytesIO(data), format="GIF")
    decoded = [np.asarray(frame) for frame in reader.iter_data()]
    duration = reader.get_meta_data(index=1).get("duration")
    reader.close()
    assert len(decoded) == 3 and decoded[0].shape[:2] == (6, 8)
    assert [int(frame[..., 0].mean()) for frame in decoded] == [0, 60, 120]
    assert duration == 50  # milliseconds per frame at 20 fps
