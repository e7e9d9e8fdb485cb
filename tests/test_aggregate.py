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
