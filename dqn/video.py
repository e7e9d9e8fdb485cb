"""Videos of evaluation games: the best game as a full-colour mp4, the agent's view as a GIF
for TensorBoard. Both plug into `dqn.evaluation.evaluate` as an `EpisodeRecorder`."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


class EpisodeRecorder:
    """What `evaluate` calls while it plays: `capture` after every step (and the reset) with
    the envs that reported, `finish` when one of their games ends."""

    def capture(self, obs: np.ndarray, env_ids: np.ndarray) -> None:
        """Record the current frame of envs `env_ids` (`obs` are their observations)."""

    def finish(self, env_index: int, episode_return: float, counted: bool) -> None:
        """Env `env_index` ended a game; `counted` says whether it is one of the scored ones."""

    def close(self) -> None:
        """Release what is still open."""


def atari_screens(envs: gym.vector.VectorEnv) -> list:
    """The ALE interfaces of a gymnasium-backend Atari vector env, one per copy (to read the
    full-colour screen that the agent's 84x84 grayscale frames are made from)."""
    copies = getattr(envs.unwrapped, "envs", None)
    if copies is None:
        raise ValueError("colour video needs the gymnasium backend (one Python env per copy)")
    return [copy.unwrapped.ale for copy in copies]


class BestGameVideo(EpisodeRecorder):
    """Writes every env's current game to its own mp4 as it is played and keeps, at `path`,
    the highest-scoring counted game: H.264, yuv420p, so browsers play it."""

    def __init__(self, envs: gym.vector.VectorEnv, path: Path, fps: float, scale: int = 2):
        self.ales = atari_screens(envs)
        self.path, self.fps, self.scale = Path(path), fps, scale
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.best_return = -np.inf
        self._writers: dict[int, Any] = {}  # imageio's writers (untyped in its hints)

    def _part(self, env_index: int) -> Path:
        return self.path.with_name(f".{self.path.stem}.env{env_index}.part.mp4")

    def capture(self, obs: np.ndarray, env_ids: np.ndarray) -> None:
        """Append each reporting env's colour screen to its game's file."""
        for i in env_ids:
            i = int(i)
            if i not in self._writers:
                self._writers[i] = imageio.get_writer(
                    self._part(i),
                    fps=self.fps,
                    codec="libx264",
                    pixelformat="yuv420p",
                    macro_block_size=1,
                    ffmpeg_log_level="error",
                )
            screen = self.ales[i].getScreenRGB()
            if self.scale > 1:
                screen = screen.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
            self._writers[i].append_data(screen)

    def finish(self, env_index: int, episode_return: float, counted: bool) -> None:
        """Close the game's file; keep it if it is the best counted game so far."""
        writer = self._writers.pop(env_index, None)
        if writer is None:
            return
        writer.close()
        part = self._part(env_index)
        if counted and episode_return > self.best_return:
            self.best_return = episode_return
            os.replace(part, self.path)
        else:
            part.unlink(missing_ok=True)

    def close(self) -> None:
        """Drop the files of unfinished games."""
        for env_index in list(self._writers):
            self.finish(env_index, -np.inf, counted=False)


class AgentViewGif(EpisodeRecorder):
    """The first counted game of env 0 as the agent sees it (the newest 84x84 frame of each
    stack), for TensorBoard; at most `max_frames` frames."""

    def __init__(self, max_frames: int = 2_000):
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self.done = False

    def capture(self, obs: np.ndarray, env_ids: np.ndarray) -> None:
        """Keep env 0's newest frame while its first game lasts."""
        if self.done or len(self.frames) >= self.max_frames:
            return
        where = np.flatnonzero(np.asarray(env_ids) == 0)
        if len(where):
            self.frames.append(np.asarray(obs[where[0], -1], dtype=np.uint8))

    def finish(self, env_index: int, episode_return: float, counted: bool) -> None:
        """Stop at the end of env 0's first game."""
        if env_index == 0:
            self.done = True


def encode_gif(frames: list[np.ndarray], fps: float) -> bytes:
    """Frames (height, width) or (height, width, 3) uint8 as an animated GIF."""
    buffer = io.BytesIO()
    images: list[npt.ArrayLike] = list(frames)
    imageio.mimwrite(buffer, images, format="GIF", duration=1000 / fps, loop=0)
    return buffer.getvalue()
