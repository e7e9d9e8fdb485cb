"""Export a trained agent for sharing: `python scripts/export.py <checkpoint> <out.pt>`.

Writes `<out.pt>`, the online network's evaluation weights (noisy layers keep their means) in
float16 with the run's config, shapes and counters: a few MB instead of a training checkpoint's
tens or hundreds (no target network, optimizer, replay or RNG states, so it cannot resume
training). Beside it, `<out>.yaml` holds the run's composed config for people to read.
`scripts/evaluate.py checkpoint=<out.pt>` scores it like any checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dqn.checkpoint import load_checkpoint, save_policy
from dqn.config import ConfigError

log = logging.getLogger("export")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, write the policy file and its config; 0 on success, 2 on a user
    error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (best.pt, last.pt)")
    parser.add_argument("out", type=Path, help="the policy file to write (.pt)")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float16",
        help="floating-point type of the weights (default float16)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        source = load_checkpoint(args.checkpoint)
        if args.out.suffix != ".pt":
            raise ConfigError(f"The output {args.out} must end in .pt.")
        config_path = args.out.with_suffix(".yaml")
        try:
            policy = save_policy(source, args.out, DTYPES[args.dtype])
            config_path.write_text(OmegaConf.to_yaml(OmegaConf.create(policy.config)))
        except OSError as e:
            raise ConfigError(f"Cannot write {e.filename or args.out} ({e.strerror}).") from None
    except ConfigError as e:
        log.error("Error: %s", e)
        return 2
    log.info(
        "wrote %s (%.1f MB, %s, %d env steps) and %s",
        args.out,
        args.out.stat().st_size / 1e6,
        args.dtype,
        policy.env_steps,
        config_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
