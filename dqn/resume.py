"""Resume rules: what a resumed run may change, and how its config is rebuilt.

A run continues with the config its checkpoint recorded. Only how long it runs, on what
hardware, and how it logs, evaluates and saves may differ (`changeable_on_resume`); any other
difference is refused with the key's name (`check_same_run`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dqn.checkpoint import load_latest
from dqn.config import ConfigError, RunConfig, config_dict, run_config_from_dict
from dqn.logger import flatten

# What a resumed run may change: how long it runs, on what, and how it logs and saves. Any other
# key (env, agent, network, seed) must equal the checkpoint's.
CHANGEABLE_ON_RESUME = (
    "total_steps",
    "log_interval_steps",
    "resume",
    "hw.",
    "eval.",
    "checkpoint.",
)


def changeable_on_resume(key: str) -> bool:
    """True for a key (`hw`, `hw.device`, `total_steps`...) a resumed run may change."""
    return key in CHANGEABLE_ON_RESUME or f"{key}.".startswith(CHANGEABLE_ON_RESUME)


def typed_values(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The composed value of each key the command line's `overrides` set (`hw=cpu` ->
    {"hw": {...}}, `+a.b=1` -> {"a.b": 1}), as plain containers; `resume` itself left out. A
    group without a value of its own (`experiment=pong`) maps to None, which
    `config_for_resume` refuses by name."""
    keys = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    values = {key: OmegaConf.select(cfg, key) for key in keys if key != "resume"}
    return {
        key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        for key, value in values.items()
    }


def config_for_resume(resume: str, overridden: dict[str, Any]) -> RunConfig:
    """The config of the run in directory `resume` (from its checkpoint), with the changes the
    user typed (`overridden`: key -> composed value) to keys a resumed run may change."""
    run_dir = Path(resume)
    found = load_latest(run_dir / "checkpoints") if run_dir.is_dir() else None
    if found is None:
        raise ConfigError(
            f"resume={resume} holds no checkpoints/last.pt: give the directory of a run "
            "(the one that has checkpoints/ in it)."
        )
    checkpoint, path = found
    config = checkpoint.config
    for key, value in overridden.items():
        if not changeable_on_resume(key):
            raise ConfigError(
                f"resume= continues a run as it was configured: {key} cannot change (only "
                "total_steps, log_interval_steps, hw, eval and checkpoint keys can)."
            )
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    run = run_config_from_dict(config, str(path))
    run.resume = str(run_dir)
    return run


def check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """ConfigError naming the first key, other than those a resumed run may change, whose
    value differs between a checkpoint's config and this run's.

    The saved config is read through this version's schema first, so a key added since the
    checkpoint was written counts at its default: defaults keep the behaviour that came before
    them, and a run from an earlier version resumes unless a key it never had is set.
    """
    # The keys a resume may change are this run's, so that only the run's own keys are read
    # (and validated) as saved.
    changeable = {key.rstrip(".") for key in CHANGEABLE_ON_RESUME}
    saved = {**saved, **{key: value for key, value in current.items() if key in changeable}}
    old = flatten(config_dict(run_config_from_dict(saved, str(path))))
    new = flatten(current)
    for key in sorted(set(old) | set(new)):
        if changeable_on_resume(key):
            continue
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"{path} was written with {key}={old.get(key)!r} but this run has "
                f"{key}={new.get(key)!r}: resume with the same value, or start a new run "
                "directory."
            )


def finished_run(run_dir: Path, run: RunConfig) -> dict[str, Any] | None:
    """The `summary.json` of the run in `run_dir` when it already ran to `run.total_steps`
    with this config and ended on its own (so a restarted suite skips it); None when there is
    no such run. ConfigError when the directory holds another run.

    The config is the one the summary saved, so a finished run is known without its
    checkpoints; a summary written before it saved one is checked against the last checkpoint.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError:  # cut while being written: the run resumes and rewrites it
        return None
    if summary.get("interrupted", True) or summary.get("env_steps", 0) < run.total_steps:
        return None
    if "config" in summary:
        check_same_run(summary["config"], config_dict(run), summary_path)
        return summary
    found = load_latest(run_dir / "checkpoints")
    if found is None or found[0].env_steps != summary["env_steps"]:
        return None
    checkpoint, path = found
    check_same_run(checkpoint.config, config_dict(run), path)
    return summary
