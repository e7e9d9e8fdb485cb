"""Sweeps on Hydra's engines: joblib multirun with HPARAMS, an Optuna search with a failing
trial, and a submitit_local job that is signalled, requeued and resumed."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_train

TINY = ["experiment=cartpole", "total_steps=600", "agent.learning_starts=100",
        "eval.interval_steps=100000", "eval.episodes=1", "eval.num_envs=1"]


def test_joblib_multirun_jobs_land_in_readable_dirs_with_hparams(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(["-m", *TINY, "agent.lr=1e-3,2e-3", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [job.name.split("_", 1)[0] for job in jobs] == ["0", "1"]
    assert "agent.lr=0.001" in jobs[0].name and "agent.lr=0.002" in jobs[1].name
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        events = EventAccumulator(str(job), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        assert "_hparams_/experiment" in events.PluginTagToContent("hparams")  # HPARAMS tab
        [final] = events.Scalars("hparams/eval_return_mean")
        assert final.value == pytest.approx(summary["eval_return_mean"])


def test_optuna_search_records_a_failing_trial_and_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # Batch sizes where one (0) is invalid: its trials fail, the others still run. (TPE starts
    # with seeded random trials: with seed 1 both values come up in 4 trials.)
    result = run_train(["-m", *TINY, "hparams_search=optuna", "hydra.sweeper.n_trials=4",
                        "agent.batch_size=choice(0,64)",
                        f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Failed experiment" in result.stderr + result.stdout
    assert "agent.batch_size must be >= 1" in result.stderr + result.stdout
    best = (sweep / "optimization_results.yaml").read_text()
    assert "agent.batch_size: 64" in best
    finished = [p for p in sweep.iterdir() if (p / "summary.json").exists()]
    assert 1 <= len(finished) < 4


@pytest.mark.slow
def test_submitit_local_job_is_requeued_on_timeout_and_finishes(tmp_path):
    """submitit signals the job (SIGUSR2) 30 s before its 1-minute limit; the trainer saves,
    submitit requeues it into the same directory, and the run resumes to its full length.
    (60k CartPole steps take two or three 30-second attempts here; submitit allows four.)"""
    sweep = tmp_path / "sweep"
    result = run_train(["-m", "experiment=cartpole", "total_steps=60000",
                        "checkpoint.interval_steps=5000", "eval.interval_steps=1000000",
                        "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1",
                        f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    [job] = [p for p in sweep.iterdir() if (p / "summary.json").exists()]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["env_steps"] == 60_000
    assert len(summary["resumes"]) >= 1
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*.err"))
    assert "SIGUSR2" in logs or "requeue" in logs.lower()
