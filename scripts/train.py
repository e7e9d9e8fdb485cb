"""Train a DQN agent: `python scripts/train.py env=pong agent.lr=2.5e-4` (Hydra overrides).

A run directory that holds a checkpoint is continued (`hydra.run.dir=<dir>`, a requeued SLURM
job, a suite started again), and one whose run already finished is left as it is;
`resume=<dir>` continues that run from the command line. Returns the final eval return,
so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dqn.config import ConfigError, load_run_config, register_configs
from dqn.resume import config_for_resume, finished_run, typed_values
from dqn.trainer import CheckpointWriteError, Trainer

log = logging.getLogger("train")
register_configs()


def fail(error: Exception, status: int) -> NoReturn:
    """End a single run with the error's one sentence and `status`; in a sweep (`-m`), raise
    it instead, so the launcher or sweeper records this job as failed and goes on."""
    log.error("%s", error)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(status)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Validate the composed config, train (or resume), and return the final eval return."""
    try:
        if cfg.get("resume") is None:
            run_cfg = load_run_config(cfg)
            run_dir = Path(HydraConfig.get().runtime.output_dir)
        else:  # the run's own config, with what this command line changes
            overridden = typed_values(cfg, list(HydraConfig.get().overrides.task))
            run_cfg = config_for_resume(cfg.resume, overridden)
            run_dir = Path(cfg.resume)
        finished = finished_run(run_dir, run_cfg)
        if finished is not None:  # e.g. a suite started again after a kill
            log.info(
                "%s already ran to %d env steps (its summary.json): nothing to do.",
                run_dir,
                finished["env_steps"],
            )
            value = finished["eval_return_mean"]
            return float("nan") if value is None else float(value)
        trainer = Trainer(run_cfg, run_dir)
    except ConfigError as e:
        fail(e, status=2)
    try:
        summary = trainer.train()
    except CheckpointWriteError as e:
        fail(e, status=1)
    finally:
        trainer.close()
    if summary["stopped_by"] == "SIGTERM":  # checkpointed; now end as the signal asks
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    value = summary["eval_return_mean"]
    return float("nan") if value is None else float(value)


if __name__ == "__main__":
    main()
