"""Sweeps on Hydra's engines: joblib multirun with HPARAMS, an Optuna search with a failing
trial, and a submitit_local job that is preempted, requeued and resumed."""

import json
import os
import signal
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_train, start_train, wait_for_file

TINY = [
    "experiment=cartpole",
    "total_steps=600",
    "agent.learning_starts=100",
    "eval.interval_steps=100000",
    "eval.episodes=1",
    "eval.num_envs=1",
]


@pytest.mark.slow
def test_joblib_multirun_jobs_land_in_readable_dirs_with_hparams(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        [
            "-m",
            *TINY,
            "agent.lr=1e-3,2e-3",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
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


@pytest.mark.slow
def test_optuna_search_records_a_failing_trial_and_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # Batch sizes where one (0) is invalid: its trials fail, the others still run. (TPE starts
    # with seeded random trials: with seed 1 both values come up in 4 trials.)
    result = run_train(
        [
            "-m",
            *TINY,
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=4",
            "agent.batch_size=choice(0,64)",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Failed experiment" in result.stderr + result.stdout
    assert "agent.batch_size must be >= 1" in result.stderr + result.stdout
    best = (sweep / "optimization_results.yaml").read_text()
    assert "agent.batch_size: 64" in best
    finished = [p for p in sweep.iterdir() if (p / "summary.json").exists()]
    assert 1 <= len(finished) < 4


def _submitit_task_pids(folder: Path) -> list[int]:
    """PIDs of the submitit task processes (`python -m submitit.core._submit <folder>/...`)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        if b"submitit.core._submit" in args and any(str(folder).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
def test_submitit_local_job_preempted_is_requeued_and_finishes(tmp_path):
    """A cluster preempts a job by sending SIGUSR2: submitit's handler requeues it, the trainer
    saves `last.pt` as the job exits, and the requeued job resumes in the same directory and
    runs to its full length without counting a step twice. The signal is sent here once the
    job has written its first checkpoint, so the test does not depend on this machine's speed.
    (A timeout sends the same signal; submitit then also counts it against `max_num_timeout`.
    With a 60-minute limit, submitit sees a signal in the first 48 minutes as a preemption.)"""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "experiment=cartpole",
        "total_steps=20000",
        "checkpoint.interval_steps=2000",
        "eval.interval_steps=1000000",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=60",
        f"hydra.sweep.dir={sweep}",
    ]
    launcher = start_train(args, tmp_path)
    try:
        wait_for_file(sweep, "*/checkpoints/last.pt", launcher)
        [task] = _submitit_task_pids(sweep / ".submitit")
        os.kill(task, signal.SIGUSR2)
        _, output = launcher.communicate(timeout=600)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output[-3000:]
    [job] = [p for p in sweep.iterdir() if (p / "summary.json").exists()]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["env_steps"] == 20_000
    [resumed_at] = summary["resumes"]
    assert 2000 <= resumed_at < 20_000
    logs = "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    assert "this job is preempted" in logs
    assert "Requeued job" in logs, logs[-3000:]
