"""Scores across seeds, with rliable: `python scripts/aggregate.py --group NAME EVAL_JSON...`.

Each evaluation JSON (written by `scripts/evaluate.py`) is one run's score: the mean return of
its games. For each group and game this prints the interquartile mean across runs (IQM, the
mean of the middle 50%) and the plain mean, each with a 95% stratified-bootstrap confidence
interval, all computed by rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"). Runs of one group and game must share the evaluation protocol. `--out F.json`
also writes the table. Needs the `analysis` extra: `pip install -e ".[analysis]"`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# What changes a score; the number of parallel envs and the eval seed do not.
PROTOCOL_KEYS = (
    "epsilon",
    "noop_max",
    "max_episode_frames",
    "repeat_action_probability",
    "frame_skip",
    "terminal_on_life_loss",
)


class AggregateError(ValueError):
    """An input the user can fix: the message says which file or group and what to do."""


@dataclass(frozen=True)
class RunScore:
    """One run's evaluation: its game, its score (mean return) and the protocol behind it."""

    path: Path
    game: str
    score: float
    episodes: int
    env_steps: int
    protocol: dict[str, Any]


@dataclass(frozen=True)
class Estimate:
    """A group's aggregate on one game, with 95% bootstrap confidence intervals."""

    group: str
    game: str
    runs: int
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]
    scores: list[float]


def load_score(path: Path) -> RunScore:
    """Read one evaluation JSON of `scripts/evaluate.py`."""
    try:
        figures = json.loads(path.read_text())
    except FileNotFoundError:
        raise AggregateError(f"{path} does not exist: give evaluation JSON files.") from None
    except json.JSONDecodeError as e:
        raise AggregateError(f"{path} is not JSON ({e}): give evaluation JSON files.") from None
    missing = [key for key in ("env", "mean", "episodes", "protocol") if key not in figures]
    if missing:
        raise AggregateError(
            f"{path} lacks {', '.join(missing)}: give files written by scripts/evaluate.py."
        )
    return RunScore(
        path=path,
        game=figures["env"],
        score=float(figures["mean"]),
        episodes=int(figures["episodes"]),
        env_steps=int(figures.get("env_steps", 0)),
        protocol={key: figures["protocol"].get(key) for key in PROTOCOL_KEYS},
    )


def score_matrices(groups: dict[str, list[RunScore]]) -> dict[tuple[str, str], list[RunScore]]:
    """Split each group by game, refusing runs of one group and game scored differently."""
    cells: dict[tuple[str, str], list[RunScore]] = {}
    for name, runs in groups.items():
        for run in runs:
            cells.setdefault((name, run.game), []).append(run)
    for (name, game), runs in cells.items():
        first = runs[0]
        for run in runs[1:]:
            if run.protocol != first.protocol:
                raise AggregateError(
                    f"group {name!r} on {game}: {run.path} and {first.path} were evaluated with "
                    f"different protocols ({run.protocol} against {first.protocol}): "
                    "evaluate them with the same settings."
                )
    return cells


def interval_estimates(
    cells: dict[tuple[str, str], list[RunScore]], reps: int = 50_000, seed: int = 0
) -> list[Estimate]:
    """IQM and mean across runs of each (group, game), with rliable's stratified bootstrap."""
    from rliable import library as rly
    from rliable import metrics

    # rliable hands arch a RandomState, which arch 7 accepts with a FutureWarning per call.
    warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)

    def aggregates(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])

    keys = list(cells)
    # rliable's layout: one (runs x tasks) matrix per method; each cell is one game, one task.
    score_dict = {
        f"{group}\0{game}": np.array([[run.score] for run in cells[group, game]])
        for group, game in keys
    }
    points, intervals = rly.get_interval_estimates(
        score_dict, aggregates, reps=reps, random_state=np.random.RandomState(seed)
    )
    estimates = []
    for group, game in keys:
        point, interval = points[f"{group}\0{game}"], intervals[f"{group}\0{game}"]
        estimates.append(
            Estimate(
                group=group,
                game=game,
                runs=len(cells[group, game]),
                iqm=float(point[0]),
                iqm_ci=(float(interval[0][0]), float(interval[1][0])),
                mean=float(point[1]),
                mean_ci=(float(interval[0][1]), float(interval[1][1])),
                scores=[run.score for run in cells[group, game]],
            )
        )
    return estimates


def table(estimates: list[Estimate]) -> list[str]:
    """The estimates as aligned text lines."""
    width = max(len("group"), *(len(e.group) for e in estimates))
    header = f"{'group':{width}s} {'game':16s} {'runs':>4s}"
    lines = [f"{header} {'IQM [95% CI]':>26s} {'mean [95% CI]':>26s}"]
    for e in estimates:
        iqm = f"{e.iqm:.1f} [{e.iqm_ci[0]:.1f}, {e.iqm_ci[1]:.1f}]"
        mean = f"{e.mean:.1f} [{e.mean_ci[0]:.1f}, {e.mean_ci[1]:.1f}]"
        lines.append(f"{e.group:{width}s} {e.game:16s} {e.runs:>4d} {iqm:>26s} {mean:>26s}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the evaluations, print (and write) the estimates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--group",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "EVAL_JSON"),
        help="a name, then the evaluation JSON of each run (seed) in the group",
    )
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    parser.add_argument("--out", type=Path, help="JSON file to write the estimates to")
    args = parser.parse_args(argv)
    if args.reps < 1:
        print(f"Error: --reps {args.reps} resamples nothing: give 1 or more.", file=sys.stderr)
        return 2
    try:
        groups: dict[str, list[RunScore]] = {}
        for name, *paths in args.group:
            if not paths:
                raise AggregateError(f"--group {name} names no file: give NAME then JSON files.")
            groups.setdefault(name, []).extend(load_score(Path(p)) for p in paths)
        cells = score_matrices(groups)
    except AggregateError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    try:
        estimates = interval_estimates(cells, args.reps, args.seed)
    except ImportError:
        print(
            'Error: rliable is not installed: pip install -e ".[analysis]".',
            file=sys.stderr,
        )
        return 2
    print("\n".join(table(estimates)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "method": "rliable stratified bootstrap, percentile 95% intervals",
            "reps": args.reps,
            "seed": args.seed,
            "estimates": [asdict(e) for e in estimates],
            "runs": {
                name: [{**asdict(run), "path": str(run.path)} for run in runs]
                for name, runs in groups.items()
            },
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
