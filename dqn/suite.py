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
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SUITE_FILE = "suite.json"  # in the sweep directory: the number of runs the sweep launches


def sweep_size(overrides: list[str]) -> int:
    """How many runs Hydra's basic sweeper launches for these overrides: the product of the
    number of values of each key (`env.id=a,b seed=1,2,3` -> 6), where a later override of a
    key replaces an earlier one (the command line replaces the preset's sweep)."""
    values: dict[str, int] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        sweep = override.is_sweep_override()
        values[override.get_key_element()] = (
            len(list(override.sweep_string_iterator())) if sweep else 1
        )
    return math.prod(values.values())


def finished_runs(sweep_dir: Path) -> list[Path]:
    """The run directories under `sweep_dir` whose run ended on its own (its `summary.json`
    says it was not interrupted)."""
    done = []
    for summary in sorted(sweep_dir.glob("*/summary.json")):
        try:
            if not json.loads(summary.read_text()).get("interrupted", True):
                done.append(summary.parent)
        except (OSError, json.JSONDecodeError):
            continue  # being written right now: not finished yet
    return done


class SuiteProgress(Callback):
    """Logs a suite's progress: `suite: 14 of 78 runs finished` as each run starts and ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Count the runs of the sweep and say how many are already done."""
        sweep_dir = Path(config.hydra.sweep.dir)
        params = config.hydra.sweeper.get("params") or {}
        preset = [f"{key}={params[key]}" for key in params]  # key=a,b,c as on a command line
        total = sweep_size([*preset, *config.hydra.overrides.task])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SUITE_FILE).write_text(json.dumps({"runs": total}) + "\n")
        log.info(
            "suite %s: %d runs, %d already finished",
            sweep_dir,
            total,
            len(finished_runs(sweep_dir)),
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
            total: int | str = json.loads((sweep_dir / SUITE_FILE).read_text())["runs"]
        except (OSError, json.JSONDecodeError, KeyError):
            total = "?"
        return f"{len(finished_runs(sweep_dir))} of {total} runs finished ({sweep_dir})"
