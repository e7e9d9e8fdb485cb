"""Run logging: TensorBoard scalars (CleanRL tags), the hyperparameter table, a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from dqn.video import encode_gif


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def hparams_markdown(config: dict) -> str:
    """The config as a two-column markdown table for TensorBoard's text tab."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in flatten(config).items())
    return f"|param|value|\n|-|-|\n{rows}"


class RunLogger:
    """Writes TensorBoard events into the run directory and drives the progress bar."""

    def __init__(
        self, run_dir: Path, total_steps: int, initial_step: int = 0, purge_step: int | None = None
    ):
        # purge_step: a resumed run drops the events its previous process wrote after the
        # checkpoint it resumes from, so no curve has a duplicated tail.
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.bar = tqdm(
            total=total_steps,
            initial=initial_step,
            unit="step",
            dynamic_ncols=True,
            disable=not sys.stderr.isatty(),
        )

    def hparams(self, config: dict) -> None:
        """Record the run's configuration as a text table."""
        self.writer.add_text("hyperparameters", hparams_markdown(config), 0)

    def hparams_result(self, config: dict, metrics: dict[str, float | None]) -> None:
        """The run's hyperparameters and final figures in TensorBoard's HPARAMS tab, so that
        `tensorboard --logdir outputs` compares the runs of a sweep side by side."""

        def plain(value: object) -> object:  # HPARAMS takes numbers, strings and booleans
            return value if isinstance(value, (bool, int, float, str)) else str(value)

        hparams = {key: plain(value) for key, value in flatten(config).items()}
        metrics = {f"hparams/{key}": value for key, value in metrics.items() if value is not None}
        self.writer.add_hparams(hparams, metrics, run_name=".")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write several scalars at one env step."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def video(self, tag: str, frames: list[np.ndarray], step: int, fps: float) -> None:
        """An animated GIF in TensorBoard's Images tab (what `add_video` writes, without
        needing moviepy)."""
        if not frames:
            return
        height, width = frames[0].shape[:2]
        image = Summary.Image(
            height=height,
            width=width,
            colorspace=3 if frames[0].ndim == 3 else 1,
            encoded_image_string=encode_gif(frames, fps),
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, step)

    def advance(self, steps: int, **postfix: object) -> None:
        """Move the progress bar by `steps` env steps; refresh its postfix when given."""
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush events to disk and close the bar."""
        self.bar.close()
        self.writer.flush()
        self.writer.close()
