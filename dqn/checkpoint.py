"""Checkpoints: atomic writes, and loading that never unpickles arbitrary objects."""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from dqn.config import ConfigError

log = logging.getLogger(__name__)

FORMAT = "atari-dqn-checkpoint/1"
REQUIRED_KEYS = ("config", "agent", "obs_shape", "n_actions", "env_steps")


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
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"Checkpoint {path} is truncated or corrupt (not a torch.save file).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise ConfigError(
            f"Checkpoint {path} holds a pickled object{what} other than tensors and plain "
            "containers: it was refused, not executed."
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"Checkpoint {path} is truncated or corrupt ({first}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an atari-dqn checkpoint (format {FORMAT} expected).")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ConfigError(f"Checkpoint {path} is incomplete: it lacks {', '.join(missing)}.")
    return payload
