"""scripts/aggregate.py: rliable's IQM and bootstrap intervals over evaluation JSON files."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, load_script
from dqn import PRETRAINED_DIR

AGGREGATE = REPO / "scripts" / "aggregate.py"
aggregate = load_script("aggregate")


def eval_json(path, returns, **protocol):
    """A copy of a shipped agent's evaluation (the format scripts/evaluate.py writes), with
    other returns and, optionally, another protocol."""
    figures = json.loads((PRETRAINED_DIR / "pong_fast_dqn.eval.json").read_text())
    figures.update(returns=returns, mean=sum(returns) / len(returns), episodes=len(returns))
    figures["protocol"].update(protocol)
    path.write_text(json.dumps(figures))
    return path


def run(*args):
    return subprocess.run(
        [sys.executable, str(AGGREGATE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_iqm_is_the_mean_of_the_middle_half_of_the_runs_and_its_interval_holds_it(tmp_path):
    # Four runs scoring 0, 10, 20 and 100: the IQM drops the lowest and the highest quarter,
    # (10 + 20) / 2 = 15; the mean is 130 / 4 = 32.5.
    paths = [
        eval_json(tmp_path / f"seed{i}.json", [score - 1, score + 1])
        for i, score in enumerate([0, 10, 20, 100])
    ]
    result = run("--group", "fast", *paths, "--reps", "2000", "--out", tmp_path / "iqm.json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fast" in result.stdout and "15.0" in result.stdout and "32.5" in result.stdout
    (estimate,) = json.loads((tmp_path / "iqm.json").read_text())["estimates"]
    assert estimate["game"] == "pong" and estimate["runs"] == 4
    assert estimate["iqm"] == pytest.approx(15.0)
    assert estimate["mean"] == pytest.approx(32.5)
    assert 0 <= estimate["iqm_ci"][0] <= 15.0 <= estimate["iqm_ci"][1] <= 100
    assert 0 <= estimate["mean_ci"][0] < 32.5 < estimate["mean_ci"][1] <= 100


def test_groups_and_games_are_estimated_apart(tmp_path):
    a = [eval_json(tmp_path / f"a{i}.json", [float(i)]) for i in range(3)]
    b = [eval_json(tmp_path / f"b{i}.json", [10.0 + i]) for i in range(3)]
    cells = aggregate.score_matrices(
        {"a": [aggregate.load_score(p) for p in a], "b": [aggregate.load_score(p) for p in b]}
    )
    estimates = {e.group: e for e in aggregate.interval_estimates(cells, reps=500)}
    assert estimates["a"].mean == pytest.approx(1.0)
    assert estimates["b"].mean == pytest.approx(11.0)
    assert estimates["a"].mean_ci[1] <= 2.0 < 10.0 <= estimates["b"].mean_ci[0]


def test_runs_scored_with_another_protocol_are_refused_by_name(tmp_path):
    same = eval_json(tmp_path / "nature.json", [1.0])
    sticky = eval_json(tmp_path / "sticky.json", [1.0], repeat_action_probability=0.25)
    result = run("--group", "mixed", same, sticky)
    assert result.returncode == 2
    assert "sticky.json" in result.stderr and "same settings" in result.stderr


def test_a_file_that_is_not_an_evaluation_is_refused_by_name(tmp_path):
    other = tmp_path / "summary.json"
    other.write_text(json.dumps({"env_steps": 10}))
    result = run("--group", "x", other)
    assert result.returncode == 2
    assert "summary.json lacks env, mean, episodes, protocol" in result.stderr


def test_no_bootstrap_resamples_is_refused(tmp_path):
    result = run("--group", "x", eval_json(tmp_path / "a.json", [1.0]), "--reps", "0")
    assert result.returncode == 2 and "--reps 0 resamples nothing" in result.stderr


RAW = {  # normalized score x as a raw score: random + x * (human - random)
    "pong": lambda x: -20.7 + 35.3 * x,
    "boxing": lambda x: 0.1 + 12.0 * x,
    "breakout": lambda x: 1.7 + 28.8 * x,
}


def game_json(path, game, normalized_score, seed):
    """A final.eval.json of one run of `game` whose mean has this human-normalized score."""
    figures = json.loads((PRETRAINED_DIR / "pong_fast_dqn.eval.json").read_text())
    score = RAW[game](normalized_score)
    figures.update(env=game, mean=score, returns=[score], episodes=1, seed=seed)
    figures["training_hours"] = 0.25 + 0.25 * seed  # 30, 45, 60 minutes
    figures["protocol"].update(epsilon=0.001)
    path.write_text(json.dumps(figures))
    return path


def test_benchmark_aggregates_normalized_scores_over_games_by_hand(tmp_path):
    # Normalized scores, 3 seeds per game: pong 0, 0.5, 1; boxing 0.25 x 3; breakout 2, 0, 1.
    # All 9: 0 0 .25 .25 .25 .5 1 1 2. IQM drops 2 at each end: (.25*3 + .5 + 1) / 5 = 0.45.
    # Mean 5.25 / 9; median of the game means (0.5, 0.25, 1.0) = 0.5; optimality gap
    # mean(1 - min(x, 1)) = (1 + .5 + 0 + .75 * 3 + 0 + 1 + 0) / 9 = 4.75 / 9.
    scores: dict[str, list[float]] = {
        "pong": [0, 0.5, 1],
        "boxing": [0.25] * 3,
        "breakout": [2, 0, 1],
    }
    paths = [
        game_json(tmp_path / f"{game}_seed{seed}.json", game, x, seed)
        for game, values in scores.items()
        for seed, x in enumerate(values, start=1)
    ]
    out, plots = tmp_path / "aggregate.json", tmp_path / "plots"
    result = run(
        "--benchmark", "atari100k", "--group", "ours", *paths,
        "--reps", "500", "--out", out, "--plots", plots,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["games"] == ["boxing", "breakout", "pong"]  # the benchmark's order
    ours = next(a for a in record["aggregates"] if a["group"] == "ours")
    assert ours["runs_per_game"] == 3 and ours["minutes_per_run"] == pytest.approx(45.0)
    assert ours["estimates"]["iqm"] == pytest.approx(0.45)
    assert ours["estimates"]["mean"] == pytest.approx(5.25 / 9)
    assert ours["estimates"]["median"] == pytest.approx(0.5)
    assert ours["estimates"]["optimality_gap"] == pytest.approx(4.75 / 9)
    low, high = ours["intervals"]["iqm"]
    assert low <= 0.45 <= high
    # The published agents on the same three games, from their per-game means.
    spr = next(a for a in record["aggregates"] if a["group"] == "SPR")
    spr_scores = [(35.7 - 0.1) / 12.0, (19.6 - 1.7) / 28.8, (-5.4 + 20.7) / 35.3]
    assert spr["estimates"]["mean"] == pytest.approx(sum(spr_scores) / 3)
    assert {a["group"] for a in record["aggregates"]} == {"ours", "DER", "DrQ(eps)", "SPR", "BBF"}
    pong = next(row for row in record["per_game"] if row["game"] == "pong")
    assert pong["ours"] == pytest.approx(RAW["pong"](0.5)) and pong["BBF"] == 16.7
    assert "ours" in result.stdout and "0.450" in result.stdout and "BBF" in result.stdout
    assert sorted(p.name for p in plots.iterdir()) == [
        "atari100k_aggregates.png",
        "atari100k_profiles.png",
    ]


def test_benchmark_refuses_a_game_outside_it(tmp_path):
    path = eval_json(tmp_path / "si.json", [100.0])
    figures = json.loads(path.read_text())
    figures["env"] = "space_invaders"
    path.write_text(json.dumps(figures))
    result = run("--benchmark", "atari100k", "--group", "x", path)
    assert result.returncode == 2
    assert "space_invaders, which is not one of the 26 Atari 100k games" in result.stderr


def test_benchmark_keeps_the_games_every_group_ran_and_says_what_it_left_out(tmp_path):
    a = [game_json(tmp_path / f"a_{g}.json", g, 0.5, 1) for g in ("pong", "boxing")]
    b = [game_json(tmp_path / f"b_{g}.json", g, 0.5, 1) for g in ("pong",)]
    b.append(game_json(tmp_path / "b_pong2.json", "pong", 0.7, 2))
    groups = {
        "a": [aggregate.load_score(p) for p in a],
        "b": [aggregate.load_score(p) for p in b],
    }
    games, matrices, notes = aggregate.normalized_matrices(groups)
    assert games == ["pong"]
    assert matrices["a"].shape == (1, 1) and matrices["b"].shape == (2, 1)
    assert matrices["b"][:, 0] == pytest.approx([0.5, 0.7])
    assert notes == ["a: boxing left out (not run by every group)"]


def test_plots_without_a_benchmark_are_refused(tmp_path):
    path = eval_json(tmp_path / "a.json", [1.0])
    result = run("--group", "x", path, "--plots", tmp_path / "plots")
    assert result.returncode == 2 and "add --benchmark atari100k" in result.stderr
    assert not (tmp_path / "plots").exists()
