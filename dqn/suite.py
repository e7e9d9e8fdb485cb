"""A benchmark suite as one Hydra multirun: progress across its runs, read from their directories.

A suite (`python scripts/train.py -m experiment=atari100k`) is the sweep its preset names (games
x seeds) in a fixed sweep directory, one subdirectory per game and seed. Started again after a
kill, the same command finds every run where it was: a finished run is skipped (its
`summary.json`, whose saved config must equal the command's), a cut one resumes from its
checkpoint (`scripts/train.py`). `SuiteProgress`, a Hydra callback, counts the runs when
the sweep starts and logs, as each run starts and ends, how many of them have finished.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import Container, DictConfig, OmegaConf

log = logging.getLogger(__name__)

_ABSENT = object()  # OmegaConf.select's default: a key the config does not have
SUITE_FILE = "suite.json"  # in the sweep directory: the sweep's overrides and its number of runs


def sweep_values(overrides: list[str]) -> dict[str, list[Any]]:
    """Each key's values in the sweep these overrides make, where a later override of a key
    replaces an earlier one (the command line replaces the preset's sweep):
    `env.id=a,b seed=1` -> {"env.id": ["a", "b"], "seed": [1]}."""
    values: dict[str, list[Any]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            values[key] = list(override.sweep_iterator())
        else:
            values[key] = [override.value()]
    return values


def sweep_size(overrides: list[str]) -> int:
    """How many runs Hydra's basic sweeper launches for these overrides: the product of the
    number of values of each key (`env.id=a,b seed=1,2,3` -> 6)."""
    return math.prod(len(values) for values in sweep_values(overrides).values())


def _in_sweep(run_dir: Path, sweep: dict[str, list[Any]]) -> bool:
    """Whether the run's composed config (`.hydra/config.yaml`) holds one of the sweep's values
    at each of its keys; keys that are not config values (config groups, `hydra.*`) and runs
    without a saved config are not checked."""
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    except OSError:
        return True
    for key, values in sweep.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        if value is _ABSENT or isinstance(value, Container):
            continue
        if not any(value == v or str(value) == str(v) for v in values):
            return False
    return True


def finished_runs(sweep_dir: Path, overrides: list[str] | None = None) -> list[Path]:
    """The run directories under `sweep_dir` whose run ended on its own (its `summary.json`
    says it was not interrupted). With the sweep's `overrides`, only the runs it launches: a
    directory that several commands share (the rest of a suite, started by name) counts each
    command's own runs."""
    sweep = sweep_values(overrides) if overrides else {}
    done = []
    for summary in sorted(sweep_dir.glob("*/summary.json")):
        try:
            if json.loads(summary.read_text()).get("interrupted", True):
                continue
        except (OSError, json.JSONDecodeError):
            continue  # being written right now: not finished yet
        if _in_sweep(summary.parent, sweep):
            done.append(summary.parent)
    return done


class SuiteProgress(Callback):
    """Logs a suite's progress: `suite: 14 of 78 runs finished` as each run starts and ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Count the runs of the sweep and say how many are already done."""
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params") or {}
        preset = [f"{key}={params[key]}" for key in params]  # key=a,b,c as on a command line
        overrides = [*preset, *config.hydra.overrides.task]
        total = sweep_size(overrides)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        suite = {"runs": total, "overrides": overrides}
        (sweep_dir / SUITE_FILE).write_text(json.dumps(suite, indent=2) + "\n")
        log.info(
            "suite %s: %d runs, %d already finished",
            sweep_dir,
            total,
            len(finished_runs(sweep_dir, overrides)),
        )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Say which run starts, and where the suite stands."""
        log.info(
            "suite: %s starts; %s", Path(config.hydra.runtime.output_dir).name, self._status(config)
        )

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Say where the suite stands after this run."""
        log.info("suite: %s", self._status(config))

    @staticmethod
    def _status(config: DictConfig) -> str:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            suite = json.loads((sweep_dir / SUITE_FILE).read_text())
            total: int | str = suite["runs"]
            overrides: list[str] | None = suite.get("overrides")
        except (OSError, json.JSONDecodeError, KeyError):
            total, overrides = "?", None
        finished = len(finished_runs(sweep_dir, overrides))
        return f"{finished} of {total} runs finished ({sweep_dir})"
