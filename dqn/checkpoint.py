"""Checkpoints: atomic writes, and loading that never unpickles arbitrary objects."""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from dqn.config import ConfigError
from dqn.networks import NOISE_PARAMETERS

log = logging.getLogger(__name__)

FORMAT = "atari-dqn-checkpoint/1"
POLICY_FORMAT = "atari-dqn-policy/1"  # weights to act with only (`save_policy`)
REQUIRED_KEYS = ("config", "agent", "obs_shape", "n_actions", "env_steps")


def previous_path(path: Path) -> Path:
    """Where the checkpoint that `path` replaced is kept (`last.pt` -> `last.prev.pt`)."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_atomically(path: Path, write: Callable[[BinaryIO], None], keep_previous: bool) -> None:
    """Write through `write` into a temporary file, fsync it, then move it to `path`; with
    `keep_previous`, the file it replaces becomes `previous_path(path)`. At every moment `path`
    holds a whole file (the old one, then the new one): the previous version is made by a hard
    link and a rename, never by moving `path` away. A crash or a full disk leaves the old files
    whole; the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    previous_tmp = path.with_name(f".{previous_path(path).name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            previous_tmp.unlink(missing_ok=True)
            os.link(path, previous_tmp)
            os.replace(previous_tmp, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        previous_tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(payload: dict, path: Path, keep_previous: bool = False) -> None:
    """Write `payload` to `path` atomically: a crash leaves the old file or the new one (and,
    with `keep_previous`, the one before it as `last.prev.pt`)."""
    _write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f), keep_previous)


def save_policy(payload: dict, path: Path, dtype: torch.dtype = torch.float16) -> None:
    """Write the part of a checkpoint an agent acts with: the online network's eval-mode
    weights (noisy layers keep their means only) in `dtype`, the run's config, shapes and
    counters. A few MB, for shipping a trained agent; it cannot resume training."""
    weights = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in payload["agent"]["q_net"].items()
        if name.rpartition(".")[2] not in NOISE_PARAMETERS
    }
    training_state = ("format", "agent", "rng", "progress")
    policy = {key: value for key, value in payload.items() if key not in training_state}
    policy["agent"] = {"q_net": weights}
    if "progress" in payload:  # a training checkpoint (a policy file already has it)
        policy["wall_seconds"] = payload["progress"].get("wall_seconds")
    _write_atomically(
        path, lambda f: torch.save({"format": POLICY_FORMAT, **policy}, f), keep_previous=False
    )


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write numpy arrays to an uncompressed `.npz` atomically (no pickled objects)."""
    _write_atomically(path, lambda f: np.savez(f, **arrays), keep_previous=False)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read what `save_arrays` wrote; ConfigError naming the file if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"{path} is truncated or corrupt ({e}).") from None


def load_latest(checkpoint_dir: Path, name: str = "last.pt") -> tuple[dict, Path] | None:
    """The newest readable of `<name>` and its previous version, with its path; None if there
    is neither. A damaged file is reported in one sentence and skipped."""
    candidates = [checkpoint_dir / name, previous_path(checkpoint_dir / name)]
    existing = [path for path in candidates if path.exists()]
    errors = []
    for path in existing:
        try:
            payload = load_checkpoint(path)
            if payload["format"] == POLICY_FORMAT:
                raise ConfigError(
                    f"{path} is a policy file (weights to act with only) and cannot resume "
                    "a run: put a training checkpoint there."
                )
            return payload, path
        except ConfigError as e:
            log.warning("%s Falling back to the previous checkpoint.", e)
            errors.append(str(e))
    if errors:
        raise ConfigError(" ".join(errors) + " No readable checkpoint is left to resume from.")
    return None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` or `save_policy` (tensors and plain
    containers only)."""
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
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, POLICY_FORMAT):
        raise ConfigError(f"{path} is not an atari-dqn checkpoint (format {FORMAT} expected).")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ConfigError(f"Checkpoint {path} is incomplete: it lacks {', '.join(missing)}.")
    return payload
