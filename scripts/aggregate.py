"""Scores across seeds and games, with rliable: `python scripts/aggregate.py --group NAME JSON...`.

Each evaluation JSON (written by `scripts/evaluate.py`, or a run's `final.eval.json`) is one
run's score: the mean return of its games. Per game, this prints each group's interquartile
mean across runs (IQM, the mean of the middle 50%) and plain mean, each with a 95%
stratified-bootstrap confidence interval, all computed by rliable (Agarwal et al. 2021, "Deep RL
at the Edge of the Statistical Precipice"). Runs of one group and game must share the
evaluation protocol. `--out F.json` also writes the table.

`--benchmark atari100k` scores the groups across games instead: every score human-normalized,
then IQM, median, mean and optimality gap over the games every group has run (each game cut to
the group's fewest runs of it, so that every game weighs the same; what is left out is printed)
with 95% stratified-bootstrap intervals, a per-game table beside the published scores of DER,
DrQ(eps), SPR and BBF (`dqn/data/atari100k.json` names each source), and with `--plots DIR`
rliable's aggregate and performance-profile plots as PNG. Needs the `analysis` extra:
`pip install -e ".[analysis]"`.
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
    training_hours: float | None = None  # the run's training wall-clock, where recorded


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
        training_hours=figures.get("training_hours"),
        protocol={key: figures["protocol"].get(key) for key in PROTOCOL_KEYS},
    )


def score_matrices(groups: dict[str, list[RunScore]]) -> dict[tuple[str, str], list[RunScore]]:
    """Split each group by game, refusing runs of one group and game scored differently."""
    cells: dict[tuple[str, str], list[RunScore]] = {}
    for name, runs in groups.items():
        for run in runs:
            cells.setdefault((name, run.game), []).append(run)
    for (name, game), runs in cells.items():
        check_one_protocol(f"group {name!r} on {game}", runs)
    return cells


def check_one_protocol(label: str, runs: list[RunScore]) -> None:
    """AggregateError naming two of `runs` (called `label`) evaluated differently."""
    first = runs[0]
    for run in runs[1:]:
        if run.protocol != first.protocol:
            raise AggregateError(
                f"{label}: {run.path} and {first.path} were evaluated with different protocols "
                f"({run.protocol} against {first.protocol}): evaluate them with the same settings."
            )


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


# ---- across games (--benchmark atari100k) ---------------------------------------------------
AGGREGATES = ("iqm", "median", "mean", "optimality_gap")


@dataclass(frozen=True)
class BenchmarkEstimate:
    """One group's aggregates of human-normalized scores over games, with 95% intervals (a
    published baseline, one per-game mean per game, has no interval: lower = upper)."""

    group: str
    runs_per_game: int
    games: list[str]
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    minutes_per_run: float | None = None  # median training minutes of a run (ours only)


def normalized_matrices(
    groups: dict[str, list[RunScore]],
) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """The games every group has run, and per group a (runs x games) matrix of human-normalized
    scores, as rliable takes them. A game with more runs than the group's fewest keeps its
    first ones (notes say which were left out); AggregateError for a game outside the
    benchmark or no game in common."""
    from dqn.atari100k import GAMES, human_normalized

    per_group: dict[str, dict[str, list[RunScore]]] = {}
    for name, runs in groups.items():
        for run in runs:
            if run.game not in GAMES:
                raise AggregateError(
                    f"{run.path} plays {run.game}, which is not one of the 26 Atari 100k games."
                )
            per_group.setdefault(name, {}).setdefault(run.game, []).append(run)
    games = [g for g in GAMES if all(g in cells for cells in per_group.values())]
    if not games:
        raise AggregateError("the groups have no game in common: give runs of the same games.")
    notes = [
        f"{name}: {game} left out (not run by every group)"
        for name, cells in per_group.items()
        for game in cells
        if game not in games
    ]
    matrices = {}
    for name, cells in per_group.items():
        count = min(len(cells[g]) for g in games)
        notes += [
            f"{name}: {run.path} left out ({game} has more runs than the group's {count})"
            for game in games
            for run in cells[game][count:]
        ]
        matrices[name] = np.stack(
            [human_normalized(g, [r.score for r in cells[g][:count]]) for g in games], axis=1
        )
    return games, matrices, notes


def baseline_matrices(games: list[str]) -> dict[str, np.ndarray]:
    """The published agents' per-game mean scores on `games`, human-normalized, as one-run
    (1 x games) matrices."""
    from dqn.atari100k import BASELINES, human_normalized, references

    refs = references()
    return {
        name: np.array([[human_normalized(g, refs.score(g, name))[()] for g in games]])
        for name in BASELINES
    }


def benchmark_estimates(
    matrices: dict[str, np.ndarray],
    games: list[str],
    reps: int,
    seed: int,
    minutes: dict[str, float] | None = None,
) -> list[BenchmarkEstimate]:
    """IQM, median, mean and optimality gap of each group's matrix, with rliable's stratified
    bootstrap (runs resampled within each game)."""
    from rliable import library as rly
    from rliable import metrics

    warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)

    def aggregates(scores: np.ndarray) -> np.ndarray:
        return np.array(
            [
                metrics.aggregate_iqm(scores),
                metrics.aggregate_median(scores),
                metrics.aggregate_mean(scores),
                metrics.aggregate_optimality_gap(scores),
            ]
        )

    points, intervals = rly.get_interval_estimates(
        matrices, aggregates, reps=reps, random_state=np.random.RandomState(seed)
    )
    return [
        BenchmarkEstimate(
            group=name,
            runs_per_game=len(matrix),
            games=games,
            estimates={k: float(points[name][i]) for i, k in enumerate(AGGREGATES)},
            intervals={
                k: (float(intervals[name][0][i]), float(intervals[name][1][i]))
                for i, k in enumerate(AGGREGATES)
            },
            minutes_per_run=(minutes or {}).get(name),
        )
        for name, matrix in matrices.items()
    ]


def benchmark_table(estimates: list[BenchmarkEstimate]) -> list[str]:
    """The aggregates as aligned text lines."""
    width = max(len("group"), *(len(e.group) for e in estimates))
    header = f"{'group':{width}s} {'runs':>4s} {'min/run':>7s}"
    lines = [header + "".join(f" {k:>22s}" for k in AGGREGATES)]
    for e in estimates:
        cells = [
            f"{e.estimates[k]:.3f} [{e.intervals[k][0]:.3f}, {e.intervals[k][1]:.3f}]"
            if e.runs_per_game > 1
            else f"{e.estimates[k]:.3f}"
            for k in AGGREGATES
        ]
        minutes = "-" if e.minutes_per_run is None else f"{e.minutes_per_run:.1f}"
        row = f"{e.group:{width}s} {e.runs_per_game:>4d} {minutes:>7s}"
        lines.append(row + "".join(f" {c:>22s}" for c in cells))
    return lines


def per_game_rows(games: list[str], groups: dict[str, list[RunScore]]) -> list[dict[str, Any]]:
    """Per game: each group's mean raw score over its runs, and the published ones."""
    from dqn.atari100k import BASELINES, references

    refs = references()
    rows = []
    for game in games:
        row: dict[str, Any] = {"game": game}
        for name, runs in groups.items():
            scores = [run.score for run in runs if run.game == game]
            row[name] = float(np.mean(scores)) if scores else None
        row.update({name: refs.score(game, name) for name in ("random", "human", *BASELINES)})
        rows.append(row)
    return rows


def per_game_table(rows: list[dict[str, Any]]) -> list[str]:
    """The per-game rows as aligned text lines."""
    columns = [key for key in rows[0] if key != "game"]
    lines = [f"{'game':16s}" + "".join(f" {c[:11]:>11s}" for c in columns)]
    for row in rows:
        cells = ["-" if row[c] is None else f"{row[c]:.1f}" for c in columns]
        lines.append(f"{row['game']:16s}" + "".join(f" {c:>11s}" for c in cells))
    return lines


def write_plots(
    estimates: list[BenchmarkEstimate], matrices: dict[str, np.ndarray], folder: Path
) -> list[Path]:
    """rliable's interval-estimate plot of the four aggregates and its performance profiles
    (share of runs above each normalized score), as PNG files in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    folder.mkdir(parents=True, exist_ok=True)
    names = [e.group for e in estimates]
    points = {e.group: np.array([e.estimates[k] for k in AGGREGATES]) for e in estimates}
    cis = {
        e.group: np.array(
            [[e.intervals[k][0] for k in AGGREGATES], [e.intervals[k][1] for k in AGGREGATES]]
        )
        for e in estimates
    }
    fig, _ = plot_utils.plot_interval_estimates(
        points,
        cis,
        metric_names=["IQM", "Median", "Mean", "Optimality Gap"],
        algorithms=names,
        xlabel="Human-normalized score",
    )
    aggregates_png = folder / "atari100k_aggregates.png"
    fig.savefig(aggregates_png, bbox_inches="tight", dpi=120)
    plt.close(fig)

    taus = np.linspace(0.0, 2.0, 81)
    profiles, profile_cis = rly.create_performance_profile(matrices, taus, reps=2000)
    palette = matplotlib.colormaps["tab10"]
    colors = {name: palette(i % 10) for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=profile_cis,
        colors=colors,
        ax=ax,
        xlabel="Human-normalized score (tau)",
    )
    handles = [matplotlib.lines.Line2D([], [], color=colors[name]) for name in names]
    ax.legend(handles, names, loc="upper right")
    profiles_png = folder / "atari100k_profiles.png"
    fig.savefig(profiles_png, bbox_inches="tight", dpi=120)
    plt.close(fig)
    return [aggregates_png, profiles_png]


def run_benchmark(groups: dict[str, list[RunScore]], args: argparse.Namespace) -> int:
    """`--benchmark atari100k`: normalize, aggregate, print, write JSON and plots."""
    from dqn.atari100k import references

    try:
        for name, runs in groups.items():  # one protocol per group, across all its games
            check_one_protocol(f"group {name!r}", runs)
        games, matrices, notes = normalized_matrices(groups)
    except AggregateError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    all_matrices = {**matrices, **baseline_matrices(games)}
    minutes = {
        name: 60 * float(np.median(hours))
        for name, runs in groups.items()
        if (hours := [r.training_hours for r in runs if r.training_hours is not None])
    }
    estimates = benchmark_estimates(all_matrices, games, args.reps, args.seed, minutes)
    rows = per_game_rows(games, groups)
    print(f"Atari 100k, {len(games)} games, human-normalized (published: per-game means)")
    print("\n".join(benchmark_table(estimates)))
    print()
    print("\n".join(per_game_table(rows)))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    plots = write_plots(estimates, all_matrices, args.plots) if args.plots else []
    if args.out is not None:
        refs = references()
        record = {
            "benchmark": "atari100k",
            "method": "human-normalized scores; rliable stratified bootstrap over runs within "
            "games, percentile 95% intervals; published agents from per-game means (one run)",
            "reps": args.reps,
            "seed": args.seed,
            "games": games,
            "aggregates": [asdict(e) for e in estimates],
            "per_game": rows,
            "normalized": {name: matrix.tolist() for name, matrix in matrices.items()},
            "published_aggregates_26_games": refs.published_aggregates,
            "sources": refs.sources,
            "runs": {
                name: [{**asdict(run), "path": str(run.path)} for run in runs]
                for name, runs in groups.items()
            },
            "notes": notes,
            "plots": [str(p) for p in plots],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    for path in plots:
        print(f"wrote {path}")
    return 0


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
    parser.add_argument(
        "--benchmark",
        choices=["atari100k"],
        help="aggregate human-normalized scores across the benchmark's games",
    )
    parser.add_argument("--plots", type=Path, help="with --benchmark: folder for the PNG plots")
    args = parser.parse_args(argv)
    if args.reps < 1:
        print(f"Error: --reps {args.reps} resamples nothing: give 1 or more.", file=sys.stderr)
        return 2
    if args.plots is not None and args.benchmark is None:
        print(
            "Error: --plots draws a benchmark's aggregates: add --benchmark atari100k.",
            file=sys.stderr,
        )
        return 2
    try:
        groups: dict[str, list[RunScore]] = {}
        for name, *paths in args.group:
            if not paths:
                raise AggregateError(f"--group {name} names no file: give NAME then JSON files.")
            groups.setdefault(name, []).extend(load_score(Path(p)) for p in paths)
    except AggregateError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    if args.benchmark is not None:
        try:
            return run_benchmark(groups, args)
        except ImportError:
            print('Error: rliable is not installed: pip install -e ".[analysis]".', file=sys.stderr)
            return 2
    try:
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
