"""Checkpoints: atomic writes, and loading that never unpickles arbitrary objects."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch

from dqn.config import ConfigError

log = logging.getLogger(__name__)

FORMAT = "atari-dqn-checkpoint/1"


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write `payload` to `path` atomically: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Checkpoint {path} does not exist: give the path of a .pt file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"Checkpoint {path} holds objects other than tensors and plain containers, or is "
            f"corrupt, and was not loaded ({first})."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ConfigError(f"Checkpoint {path} is truncated or corrupt ({e}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an atari-dqn checkpoint (format {FORMAT} expected).")
    return payload
