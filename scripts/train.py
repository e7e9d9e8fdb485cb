"""Train a DQN agent: `python scripts/train.py env=pong agent.lr=2.5e-4` (Hydra overrides).

Returns the final eval return, so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dqn.config import ConfigError, load_run_config, register_configs
from dqn.trainer import Trainer

log = logging.getLogger("train")
register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Validate the composed config, train, and return the final eval return."""
    try:
        run_cfg = load_run_config(cfg)
        trainer = Trainer(run_cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as e:
        log.error("%s", e)
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    value = summary["eval_return_mean"]
    return float("nan") if value is None else float(value)


if __name__ == "__main__":
    main()
