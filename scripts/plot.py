"""Learning curves from TensorBoard logs: `python scripts/plot.py <run or sweep dir>... [--out F]`.

Finds every run under the given directories (a directory with TensorBoard event files), reads
one scalar (eval/episodic_return by default), groups runs whose Hydra overrides differ only in
`seed`, and draws each group's mean with a min-max band across seeds, against emulator frames
and against training hours (wall-clock time while a process of the run was running: the pauses
of a run stopped and resumed later are left out). Saves a PNG (default: curves.png in the first
directory).
`--thresholds 0 15` also draws those levels and prints, per run, the first logged point at or
above each (env steps, frames, hours). `--labels A B` names the paths' groups in the legend
(a record's overrides say what its command was, not what it differs in from today's presets).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import itertools

import matplotlib.pyplot as plt
import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

log = logging.getLogger("plot")


@dataclass
class Curve:
    """One run's scalar series."""

    run_dir: Path
    label: str  # the run's overrides without its seed: runs that share it are seeds of one setup
    steps: np.ndarray  # env steps (agent steps summed over envs)
    frames: np.ndarray
    hours: np.ndarray  # training hours: wall-clock time the run's processes ran, pauses left out
    values: np.ndarray


def find_runs(paths: list[Path]) -> list[Path]:
    """Directories under `paths` (or the paths themselves) that hold TensorBoard event files."""
    runs: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        runs.update(f.parent for f in path.rglob("events.out.tfevents.*"))
    return sorted(runs)


def frames_per_step(run_dir: Path) -> int:
    """Emulator frames per env step for the run (its Hydra config says; 1 when unknown)."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():
        return 1
    env = (yaml.safe_load(config_file.read_text()) or {}).get("env", {})
    return int(env.get("frame_skip", 1)) if env.get("kind", "atari") == "atari" else 1


def run_label(run_dir: Path) -> str:
    """The run's command-line overrides except `seed` (hydra.* ones left out too)."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        return run_dir.name
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    kept = [o for o in overrides if not o.split("=")[0].lstrip("+~").startswith(("seed", "hydra"))]
    return " ".join(kept) or "defaults"


def active_intervals(run_dir: Path) -> list[tuple[float, float]]:
    """The wall-clock spans (start, end) in which the run was writing events: one per process
    (each writes its own event files; spans that overlap or touch are merged), in time order."""
    spans = []
    for path in run_dir.glob("events.out.tfevents.*"):
        times = [event.wall_time for event in EventFileLoader(str(path)).Load()]
        if times:
            spans.append((min(times), max(times)))
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def training_hours(wall_times: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    """Hours of running time from the first interval's start to each wall time: the gaps
    between intervals (a run stopped, then resumed hours or days later) do not count."""
    pauses = np.zeros(len(wall_times))
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        pauses += np.clip(wall_times - end, 0.0, next_start - end)
    return (wall_times - intervals[0][0] - pauses) / 3600


def read_curve(run_dir: Path, tag: str) -> Curve | None:
    """The `tag` series of one run, or None if the run never logged it."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return None
    scalars = events.Scalars(tag)
    # A resumed run may log a step twice (before and after the restart): keep the latest.
    latest = {s.step: s for s in sorted(scalars, key=lambda s: s.wall_time)}
    points = [latest[step] for step in sorted(latest)]
    return Curve(
        run_dir=run_dir,
        label=run_label(run_dir),
        steps=np.array([p.step for p in points], dtype=np.int64),
        frames=np.array([p.step for p in points], dtype=np.float64) * frames_per_step(run_dir),
        hours=training_hours(np.array([p.wall_time for p in points]), active_intervals(run_dir)),
        values=np.array([p.value for p in points]),
    )


def first_crossing(curve: Curve, threshold: float, smooth: int = 1) -> int | None:
    """Index of the first point whose value (averaged over `smooth` points, as drawn) is at
    least `threshold`, or None."""
    above = np.flatnonzero(smoothed(curve.values, smooth) >= threshold)
    return int(above[0]) if len(above) else None


def crossing_table(curves: list[Curve], thresholds: list[float], smooth: int = 1) -> list[str]:
    """Lines of a table: for each run and threshold, where the curve as drawn first reached it
    (with `smooth`, one lucky game of a training return does not count)."""
    width = max([3, *(len(str(curve.run_dir)) for curve in curves)])
    lines = [f"{'run':{width}s} {'threshold':>9s} {'env steps':>10s} {'frames':>11s} {'hours':>6s}"]
    for curve in curves:
        last = smoothed(curve.values, smooth)[-1]
        for threshold in thresholds:
            i = first_crossing(curve, threshold, smooth)
            where = (
                (f"not reached (last point: {last:g} at {curve.steps[-1]} steps)")
                if i is None
                else (f"{curve.steps[i]:>10d} {curve.frames[i]:>11.0f} {curve.hours[i]:>6.2f}")
            )
            lines.append(f"{curve.run_dir!s:{width}s} {threshold:>9g} {where}")
    return lines


def group_band(
    curves: list[Curve], x: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max across `curves` on a shared grid of `x` ("frames" or "hours"): each
    curve is interpolated over the range all of them cover."""
    end = min(getattr(c, x)[-1] for c in curves)
    grid = np.unique(np.concatenate([getattr(c, x) for c in curves]))
    grid = grid[grid <= end]
    values = np.stack([np.interp(grid, getattr(c, x), c.values) for c in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def distinguishing_labels(labels: list[str]) -> dict[str, str]:
    """Each label without the overrides that every label shares (they say nothing in a legend)."""
    common = set.intersection(*(set(label.split()) for label in labels)) if labels else set()
    return {
        label: " ".join(o for o in label.split() if o not in common) or label for label in labels
    }


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` points (the first points average fewer)."""
    if window <= 1:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def plot(
    curves: list[Curve],
    tag: str,
    out: Path,
    smooth: int = 1,
    thresholds: tuple = (),
    labels_as_given: bool = False,
) -> None:
    """Two panels (vs frames, vs hours), one line and band per group of seeds, and a dashed
    line at each threshold. The legend names each group by its label, less the overrides all
    groups share unless `labels_as_given`."""
    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        groups.setdefault(curve.label, []).append(curve)
    names = {g: g for g in groups} if labels_as_given else distinguishing_labels(sorted(groups))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    palette = plt.get_cmap("tab10")
    colors = [palette(i % 10) for i in range(len(groups))]
    for (label, members), color in zip(sorted(groups.items()), colors, strict=True):
        name = f"{names[label]} ({len(members)} seed{'s' if len(members) > 1 else ''})"
        for ax, x in zip(axes, ("frames", "hours"), strict=True):
            grid, mean, low, high = group_band(members, x)
            ax.plot(
                grid, smoothed(mean, smooth), color=color, label=name if x == "frames" else None
            )
            if len(members) > 1:
                ax.fill_between(
                    grid,
                    smoothed(low, smooth),
                    smoothed(high, smooth),
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
    axes[0].set_xlabel("emulator frames")
    axes[1].set_xlabel("training hours (pauses between resumes left out)")
    for ax in axes:
        ax.set_ylabel(tag)
        ax.grid(alpha=0.3)
        for threshold in thresholds:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    # Long override lists get a row each: side by side they run off the figure.
    columns = 1 if max(len(name) for name in names.values()) > 45 else min(len(groups), 3)
    fig.legend(fontsize="small", loc="outside lower center", ncol=columns)
    average = f", moving average of {smooth} points" if smooth > 1 else ""
    fig.suptitle(f"{tag}: mean and min-max band across seeds{average}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the runs, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--tag", default="eval/episodic_return", help="TensorBoard scalar")
    parser.add_argument("--out", type=Path, help="PNG to write (default: <first>/curves.png)")
    parser.add_argument("--smooth", type=int, default=1, help="moving average over N points")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="*",
        default=[],
        help="levels to mark; prints where each run first reached them",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="NAME",
        help="a legend name for each path, in order (default: the runs' overrides less seed)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its file-by-file chatter
    if args.labels is not None and len(args.labels) != len(args.paths):
        print(
            f"Error: --labels got {len(args.labels)} names for {len(args.paths)} paths: "
            "give one name per path.",
            file=sys.stderr,
        )
        return 2
    try:
        runs = {run: i for i, path in enumerate(args.paths) for run in find_runs([path])}
    except FileNotFoundError as e:
        print(f"Error: {e}: give a run directory or a sweep directory.", file=sys.stderr)
        return 2
    curves = []
    for run, i in sorted(runs.items()):
        curve = read_curve(run, args.tag)
        if curve is not None:
            curve.label = curve.label if args.labels is None else args.labels[i]
            curves.append(curve)
    if not curves:
        print(
            f"Error: no run under {', '.join(map(str, args.paths))} logged {args.tag}: "
            "check the directory and --tag.",
            file=sys.stderr,
        )
        return 2
    out = args.out or args.paths[0] / "curves.png"
    plot(curves, args.tag, out, args.smooth, tuple(args.thresholds), args.labels is not None)
    if args.thresholds:
        print("\n".join(crossing_table(curves, args.thresholds, args.smooth)))
    log.info("%d runs in %d groups -> %s", len(curves), len({c.label for c in curves}), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
