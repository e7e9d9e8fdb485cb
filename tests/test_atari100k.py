"""Atari 100k: the reference data, the preset's protocol, and the suite that resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import TRAIN, compose_config, run_train, wait_for_file
from dqn.atari100k import BASELINES, GAMES, human_normalized, references
from dqn.config import load_run_config
from dqn.suite import finished_runs, sweep_size


def test_the_26_games_are_ale_roms_with_every_reference_score():
    from ale_py.roms import get_all_rom_ids

    assert len(GAMES) == 26 and set(GAMES) <= set(get_all_rom_ids())
    refs = references()
    for game in GAMES:
        assert set(refs.games[game]) >= {"random", "human", *BASELINES}
        assert refs.score(game, "human") > refs.score(game, "random")
    assert set(refs.sources) >= {"random", "human", *BASELINES}
    assert all(refs.sources[name].strip() for name in refs.sources)


def test_human_normalized_scores_by_hand():
    # Pong: random -20.7, human 14.6. -20.7 -> 0, 14.6 -> 1, 0 -> 20.7 / 35.3.
    assert human_normalized("pong", [-20.7, 14.6, 0.0]) == pytest.approx([0, 1, 20.7 / 35.3])
    # Boxing: random 0.1, human 12.1; SPR's 35.7 is (35.7 - 0.1) / 12 = 2.9667.
    assert human_normalized("boxing", 35.7)[()] == pytest.approx(2.966667, rel=1e-5)
    with pytest.raises(KeyError):
        human_normalized("space_invaders", 1.0)


def test_the_published_drq_eps_mean_follows_from_its_per_game_scores():
    """A check of the shipped table against the published aggregate (Agarwal et al. 2021:
    DrQ(eps) mean human-normalized score 0.465 over the 26 games)."""
    scores = [human_normalized(g, references().score(g, "DrQ(eps)"))[()] for g in GAMES]
    assert np.mean(scores) == pytest.approx(0.465, abs=0.01)


def test_preset_follows_the_benchmark_protocol():
    run = load_run_config(compose_config(["experiment=atari100k", "env.id=alien"]))
    assert run.total_steps == 100_000 and run.env.frame_skip == 4  # 400k frames
    assert run.env.repeat_action_probability == 0.0 and run.env.terminal_on_life_loss
    assert run.env.max_episode_frames == 108_000 and run.env.noop_max == 30
    assert run.eval.episodes >= 30 and run.eval.interval_steps >= run.total_steps
    a = run.agent
    assert (a.train_freq, a.gradient_steps) == (1, 1)  # replay ratio 1
    assert a.buffer_size >= run.total_steps and a.n_step == 10
    assert run.hw.num_envs == 1


def test_the_suite_is_the_26_games_times_3_seeds():
    cfg = compose_config(["experiment=atari100k"])
    params = cfg.hydra.sweeper.params if "hydra" in cfg else None
    if params is None:  # compose() leaves the hydra node out: read the preset itself
        from omegaconf import OmegaConf

        from conftest import CONF

        params = OmegaConf.load(CONF / "experiment" / "atari100k.yaml").hydra.sweeper.params
    assert params["env.id"].split(",") == list(GAMES)
    preset = [f"{key}={value}" for key, value in params.items()]
    # the order Hydra's basic sweeper launches them in: all 26 games of seed 1 come first
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(preset), None)[0]
    assert jobs[:2] == [["seed=1", "env.id=alien"], ["seed=1", "env.id=amidar"]]
    assert {job[0] for job in jobs[:26]} == {"seed=1"} and jobs[26][0] == "seed=2"
    assert sweep_size(preset) == 78
    assert sweep_size([*preset, "seed=1"]) == 26  # the command line's value replaces the sweep
    assert sweep_size([*preset, "env.id=pong,boxing", "seed=1,2"]) == 4


def test_finished_runs_are_those_that_ended_on_their_own(tmp_path):
    for name, interrupted in (("a", False), ("b", True), ("c", None)):
        (tmp_path / name).mkdir()
        if interrupted is not None:
            summary = {"interrupted": interrupted}
            (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "summary.json").write_text("{")  # being written
    assert finished_runs(tmp_path) == [tmp_path / "a"]


def test_a_sweep_counts_only_its_own_finished_runs(tmp_path):
    # Two commands share one sweep directory: each counts the runs it launches, told by the
    # values at its keys in the run's saved config (groups and hydra keys are not values).
    for game, seed, lr in (
        ("pong", 1, 1e-4),
        ("boxing", 1, 1e-4),
        ("pong", 2, 1e-4),
        ("kangaroo", 1, 1e-3),
    ):
        run = tmp_path / f"{game}_seed{seed}"
        (run / ".hydra").mkdir(parents=True)
        config = {"env": {"id": game}, "seed": seed, "agent": {"lr": lr}}
        (run / ".hydra" / "config.yaml").write_text(json.dumps(config))  # YAML reads JSON
        (run / "summary.json").write_text(json.dumps({"interrupted": False}))
    (tmp_path / "old").mkdir()  # no saved config: counted, as before the sweep was known
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"interrupted": False}))
    overrides = [
        "experiment=atari100k",
        "hydra/launcher=joblib",
        "seed=1,2,3",
        "env.id=pong,kangaroo",
    ]
    mine = finished_runs(tmp_path, [*overrides, "seed=1", "agent.lr=0.0001"])
    assert mine == [tmp_path / "old", tmp_path / "pong_seed1"]
    assert finished_runs(tmp_path, overrides) == [
        tmp_path / "kangaroo_seed1",
        tmp_path / "old",
        tmp_path / "pong_seed1",
        tmp_path / "pong_seed2",
    ]
    assert len(finished_runs(tmp_path)) == 5


# Two games of a few hundred steps, checkpointed every 300.
TINY_SUITE = [
    "-m",
    "experiment=atari100k",
    "env.id=pong,boxing",
    "seed=1",
    "total_steps=600",
    "agent.learning_starts=200",
    "agent.buffer_size=2000",
    "checkpoint.interval_steps=300",
    "eval.episodes=1",
    "eval.num_envs=1",
    "env.max_episode_frames=2000",
]


@pytest.mark.slow
def test_a_killed_suite_started_again_skips_finished_runs_and_resumes_the_cut_one(tmp_path):
    sweep = tmp_path / "suite"
    args = [*TINY_SUITE, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN), *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_file(sweep, "boxing_seed1/checkpoints/last.pt", proc)  # pong has finished
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    pong, boxing = sweep / "pong_seed1", sweep / "boxing_seed1"
    assert finished_runs(sweep) == [pong]
    pong_summary = (pong / "summary.json").read_text()
    assert not (pong / "checkpoints" / "replay.npz").exists()  # a finished run drops it
    shutil.rmtree(pong / "checkpoints")  # known as finished by its summary alone

    result = run_train(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "suite " in output and "2 runs, 1 already finished" in output
    assert "2 of 2 runs finished" in output
    assert (pong / "summary.json").read_text() == pong_summary  # skipped, untouched
    assert "nothing to do" in (pong / "train.log").read_text()
    summary = json.loads((boxing / "summary.json").read_text())
    assert summary["resumes"] == [300] and summary["env_steps"] == 600
    assert not summary["interrupted"] and finished_runs(sweep) == [boxing, pong]
    for run in (pong, boxing):
        figures = json.loads((run / "final.eval.json").read_text())
        assert figures["env_steps"] == 600 and figures["seed"] == 1
        assert figures["protocol"]["epsilon"] == 0.001 and figures["episodes"] == 1
        assert not (run / "checkpoints" / "replay.npz").exists()
