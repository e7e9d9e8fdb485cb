"""The checkpoint formats, owned here: typed payloads (`TrainingCheckpoint`, `PolicyFile`),
atomic writes, and loading that never unpickles arbitrary objects.

On disk each file is a `torch.save` of plain containers and tensors with a `format` tag; only
this module reads or writes those keys. Everyone else handles the dataclasses below.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import torch

from dqn.config import ConfigError
from dqn.envs import Episode
from dqn.networks import NOISE_PARAMETERS

log = logging.getLogger(__name__)

FORMAT = "atari-dqn-checkpoint/1"
POLICY_FORMAT = "atari-dqn-policy/1"  # weights to act with only (`save_policy`)
REQUIRED_KEYS = ("config", "agent", "obs_shape", "n_actions", "env_steps")


@dataclass(kw_only=True)
class RunRecord:
    """What every file records about the run that wrote it."""

    config: dict[str, Any]  # the run's config as plain containers (`Trainer.config_dict`)
    obs_shape: tuple[int, ...]
    obs_dtype: str | None = None  # numpy's name for it (uint8); None where not recorded
    n_actions: int
    env_steps: int
    updates: int = 0
    episodes: int = 0
    eval_return_mean: float | None = None  # the latest evaluation's mean
    best_eval_return: float = -float("inf")
    wall_seconds: float | None = None  # training wall-clock of the run up to this file

    @property
    def training_hours(self) -> float | None:
        """`wall_seconds` in hours, rounded to 0.001 (None where it was not recorded)."""
        return None if self.wall_seconds is None else round(self.wall_seconds / 3600, 3)

    @staticmethod
    def _header_fields(payload: dict[str, Any]) -> dict[str, Any]:
        optional: dict[str, Any] = {
            key: payload[key]
            for key in ("obs_dtype", "updates", "episodes", "eval_return_mean", "best_eval_return")
            if key in payload
        }
        return {
            "config": payload["config"],
            "obs_shape": tuple(int(n) for n in payload["obs_shape"]),
            "n_actions": int(payload["n_actions"]),
            "env_steps": int(payload["env_steps"]),
            **optional,
        }


RECENT_GAMES = 100  # training games in the running mean of `RunState.recent_returns`


@dataclass(kw_only=True)
class RunState:
    """Everything the training loop counts beyond the agent's weights and the RNGs. The trainer
    holds one, a checkpoint saves it whole and a resumed run takes it back whole, so a field
    added here is resumed without another line anywhere."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0  # finished training games
    best_eval_return: float = -float("inf")  # the best evaluation's mean (`best.pt` holds it)
    last_eval_step: int = -1  # env step of the latest evaluation
    last_eval: list[Episode] | None = None  # the latest evaluation's games
    recent_returns: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_GAMES))
    # Update metrics summed since the last log line: tensors while training (no host sync per
    # update), floats in a checkpoint.
    metric_sums: dict[str, Any] = field(default_factory=dict)
    metric_count: int = 0
    forgiven_updates: int = 0  # updates skipped while a resumed run refilled its replay
    games_seed: int = 0  # seed of the latest fresh start of all training games
    schedule_origin: tuple[int, float] = (0, 0.0)  # (env step, progress there): `run_progress`
    resumes: list[int] = field(default_factory=list)  # env steps at which the run resumed
    noise_round: int = -1  # train_freq round of the latest noisy-net draw (`Trainer.learn`)
    # Training wall-clock of the run's earlier processes; a checkpoint holds it up to its write.
    wall_seconds: float = 0.0

    @property
    def eval_return_mean(self) -> float | None:
        """The latest evaluation's mean score (None before the first)."""
        if self.last_eval is None:
            return None
        return float(np.mean([e.episode_return for e in self.last_eval]))

    def to_dict(self) -> dict[str, Any]:
        """Plain containers for `torch.save`: every field, none named here but those whose
        type needs converting."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        plain["last_eval"] = (
            None if self.last_eval is None else [dataclasses.astuple(e) for e in self.last_eval]
        )
        plain["recent_returns"] = [float(r) for r in self.recent_returns]
        plain["metric_sums"] = {k: float(v) for k, v in self.metric_sums.items()}
        plain["schedule_origin"] = list(self.schedule_origin)
        plain["resumes"] = list(self.resumes)
        return plain

    @classmethod
    def from_dict(cls, plain: dict[str, Any]) -> RunState:
        """Read what `to_dict` wrote; fields a file lacks take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in plain.items() if key in known}
        if values.get("last_eval") is not None:
            values["last_eval"] = [
                Episode(int(i), float(r), int(n), float(f)) for i, r, n, f in values["last_eval"]
            ]
        if "recent_returns" in values:
            values["recent_returns"] = deque(values["recent_returns"], maxlen=RECENT_GAMES)
        if "schedule_origin" in values:
            step, done = values["schedule_origin"]
            values["schedule_origin"] = (int(step), float(done))
        if values.get("wall_seconds") is None:
            values.pop("wall_seconds", None)
        return cls(**values)


# Keys of the file format's first layout, which kept the counters in its header and the rest
# under "progress"; such files still resume.
_LEGACY_STATE_KEYS = ("env_steps", "updates", "episodes", "best_eval_return")


@dataclass(kw_only=True)
class TrainingCheckpoint:
    """Everything a run needs to continue: `checkpoints/last.pt`, `best.pt`, `crash.pt`. Its
    run record (steps, scores, wall-clock) is read off `state`."""

    config: dict[str, Any]  # the run's config as plain containers (`config_dict`)
    obs_shape: tuple[int, ...]
    obs_dtype: str | None = None  # numpy's name for it (uint8); None where not recorded
    n_actions: int
    agent: dict[str, Any]  # `DQNAgent.state_dict()`: online and target weights, optimizer
    rng: dict[str, Any]  # numpy bit generator, torch CPU and CUDA states
    state: RunState

    @property
    def env_steps(self) -> int:
        return self.state.env_steps

    @property
    def updates(self) -> int:
        return self.state.updates

    @property
    def episodes(self) -> int:
        return self.state.episodes

    @property
    def eval_return_mean(self) -> float | None:
        return self.state.eval_return_mean

    @property
    def best_eval_return(self) -> float:
        return self.state.best_eval_return

    @property
    def wall_seconds(self) -> float:
        return self.state.wall_seconds

    @property
    def training_hours(self) -> float:
        """`wall_seconds` in hours, rounded to 0.001."""
        return round(self.state.wall_seconds / 3600, 3)

    def to_payload(self) -> dict[str, Any]:
        """The plain containers `torch.save` writes: the run record (for readers of the file)
        beside the whole state it is read off."""
        return {
            "format": FORMAT,
            **_header(self),
            "agent": self.agent,
            "rng": self.rng,
            "state": self.state.to_dict(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TrainingCheckpoint:
        """Read what `to_payload` wrote (or the first layout's header and "progress")."""
        if "state" in payload:
            state = RunState.from_dict(payload["state"])
        else:
            legacy = {key: payload[key] for key in _LEGACY_STATE_KEYS if key in payload}
            state = RunState.from_dict({**legacy, **(payload.get("progress") or {})})
        header = RunRecord._header_fields(payload)
        return cls(
            config=header["config"],
            obs_shape=header["obs_shape"],
            obs_dtype=header.get("obs_dtype"),
            n_actions=header["n_actions"],
            agent=payload["agent"],
            rng=payload["rng"],
            state=state,
        )


def _header(record: RunRecord | TrainingCheckpoint) -> dict[str, Any]:
    """The run record every file starts with."""
    return {
        "config": record.config,
        "obs_shape": list(record.obs_shape),
        **({"obs_dtype": record.obs_dtype} if record.obs_dtype is not None else {}),
        "n_actions": record.n_actions,
        "env_steps": record.env_steps,
        "updates": record.updates,
        "episodes": record.episodes,
        "eval_return_mean": record.eval_return_mean,
        "best_eval_return": record.best_eval_return,
    }


@dataclass(kw_only=True)
class PolicyFile(RunRecord):
    """The weights an agent acts with (`scripts/export.py`): a few MB, cannot resume."""

    # The online network's eval-mode weights; noisy layers keep their means only.
    q_net: dict[str, torch.Tensor]

    def to_payload(self) -> dict[str, Any]:
        """The plain containers `torch.save` writes."""
        return {
            "format": POLICY_FORMAT,
            **_header(self),
            "agent": {"q_net": self.q_net},
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PolicyFile:
        """Read what `to_payload` wrote."""
        wall_seconds = payload.get("wall_seconds")
        return cls(
            **cls._header_fields(payload),
            wall_seconds=None if wall_seconds is None else float(wall_seconds),
            q_net=payload["agent"]["q_net"],
        )

    @classmethod
    def from_checkpoint(
        cls, source: TrainingCheckpoint | PolicyFile, dtype: torch.dtype = torch.float16
    ) -> PolicyFile:
        """The policy of a training checkpoint (or another policy file) with its floating-point
        weights in `dtype` and the noisy layers' noise left out."""
        weights = source.q_net if isinstance(source, PolicyFile) else source.agent["q_net"]
        record = {f.name: getattr(source, f.name) for f in dataclasses.fields(RunRecord)}
        return cls(
            **record,
            q_net={
                name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                for name, tensor in weights.items()
                if name.rpartition(".")[2] not in NOISE_PARAMETERS
            },
        )


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


def save_checkpoint(
    checkpoint: TrainingCheckpoint, path: Path, keep_previous: bool = False
) -> None:
    """Write `checkpoint` to `path` atomically: a crash leaves the old file or the new one
    (and, with `keep_previous`, the one before it as `last.prev.pt`)."""
    payload = checkpoint.to_payload()
    _write_atomically(path, lambda f: torch.save(payload, f), keep_previous)


def save_policy(
    source: TrainingCheckpoint | PolicyFile, path: Path, dtype: torch.dtype = torch.float16
) -> PolicyFile:
    """Write the part of `source` an agent acts with (`PolicyFile.from_checkpoint`) to `path`
    atomically, and return it."""
    policy = PolicyFile.from_checkpoint(source, dtype)
    payload = policy.to_payload()
    _write_atomically(path, lambda f: torch.save(payload, f), keep_previous=False)
    return policy


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write numpy arrays to an uncompressed `.npz` atomically (no pickled objects)."""
    # Typed loosely: numpy's stubs would match a key named allow_pickle to that flag.
    loose = cast(dict[str, Any], arrays)
    _write_atomically(path, lambda f: np.savez(f, **loose), keep_previous=False)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read what `save_arrays` wrote; ConfigError naming the file if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"{path} is truncated or corrupt ({e}).") from None


def load_latest(
    checkpoint_dir: Path, name: str = "last.pt"
) -> tuple[TrainingCheckpoint, Path] | None:
    """The newest readable of `<name>` and its previous version, with its path; None if there
    is neither. A damaged file is reported in one sentence and skipped."""
    candidates = [checkpoint_dir / name, previous_path(checkpoint_dir / name)]
    existing = [path for path in candidates if path.exists()]
    errors = []
    for path in existing:
        try:
            checkpoint = load_checkpoint(path)
            if isinstance(checkpoint, PolicyFile):
                raise ConfigError(
                    f"{path} is a policy file (weights to act with only) and cannot resume "
                    "a run: put a training checkpoint there."
                )
            return checkpoint, path
        except ConfigError as e:
            log.warning("%s Falling back to the previous checkpoint.", e)
            errors.append(str(e))
    if errors:
        raise ConfigError(" ".join(errors) + " No readable checkpoint is left to resume from.")
    return None


def load_checkpoint(path: Path) -> TrainingCheckpoint | PolicyFile:
    """Load a file written by `save_checkpoint` or `save_policy` (tensors and plain containers
    only); ConfigError naming the file if it is missing, damaged or not ours."""
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
    try:
        if payload["format"] == POLICY_FORMAT:
            return PolicyFile.from_payload(payload)
        return TrainingCheckpoint.from_payload(payload)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"Checkpoint {path} has a damaged field ({e!r}).") from None
