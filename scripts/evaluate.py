"""Score a saved agent: `python scripts/evaluate.py checkpoint=<path> [episodes=30 epsilon=0.05]`.

Rebuilds env and network from the run's saved config, plays whole games with the stated
protocol, prints mean, std, min and max, and writes them to `<checkpoint>.eval.json`; with
`video=true` also the best game as `<checkpoint>.best.mp4` (full colour, plays in a browser).
Both go beside the checkpoint (for the agents shipped in `dqn/pretrained/`, into
`outputs/evaluate/<name>/`), or into `out_dir=<dir>`. Policy files (`scripts/export.py`) are
evaluated the same way.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from dqn import PRETRAINED_DIR
from dqn.config import ConfigError
from dqn.evaluation import EvalProtocol, evaluate_checkpoint
from dqn.hardware import resolve_device

log = logging.getLogger("evaluate")


@dataclass
class EvaluateConfig(EvalProtocol):
    """The evaluation protocol plus what to evaluate and where."""

    checkpoint: str = MISSING
    env_id: str | None = None  # refuse a checkpoint trained on another game
    device: str = "cpu"
    video: bool = False  # write the best game as an mp4 beside the checkpoint
    out_dir: str | None = None  # where the JSON and mp4 go (default: beside the checkpoint)


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def default_out_dir(checkpoint: Path) -> Path:
    """Beside the checkpoint; for an agent shipped in the package, `outputs/evaluate/<name>`,
    so the shipped files (its reference evaluation among them) stay as they are."""
    if checkpoint.resolve().parent == PRETRAINED_DIR:
        return Path("outputs") / "evaluate" / checkpoint.stem
    return checkpoint.parent


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Evaluate, print the figures, write the JSON beside the checkpoint."""
    try:
        if OmegaConf.is_missing(cfg, "checkpoint"):
            raise ConfigError(
                "checkpoint is required: give checkpoint=<run dir>/checkpoints/best.pt."
            )
        # The container of a structured config is a dict.
        fields = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        path = Path(fields.pop("checkpoint"))
        env_id = fields.pop("env_id")
        device = resolve_device(fields.pop("device"), key="device")
        out_dir = Path(fields.pop("out_dir") or default_out_dir(path))
        if out_dir != path.parent:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"Cannot create out_dir={out_dir} ({e.strerror}).") from None
        if not os.access(out_dir, os.W_OK):
            raise ConfigError(
                f"Cannot write the results to {out_dir}: give out_dir=<a writable directory>."
            )
        video = out_dir / f"{path.stem}.best.mp4" if fields.pop("video") else None
        protocol = EvalProtocol(**fields)
        figures = evaluate_checkpoint(path, protocol, device, env_id, video)
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    out = out_dir / f"{path.stem}.eval.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"{figures['env']} after {figures['env_steps']} steps: "
        f"{figures['mean']:.1f} +- {figures['std']:.1f} (min {figures['min']:.0f}, "
        f"max {figures['max']:.0f}) over {figures['episodes']} games, first life "
        f"{figures['first_life_mean']:.1f}; epsilon {protocol.epsilon}, up to "
        f"{protocol.noop_max} no-ops, sticky {protocol.repeat_action_probability}\n"
        f"wrote {out}" + (f" and {video} (best game)" if video else "")
    )
    return figures["mean"]


if __name__ == "__main__":
    main()
