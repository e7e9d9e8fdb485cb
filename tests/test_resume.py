"""Runs that survive interruptions: exact resume, automatic resume, signals, bad checkpoints."""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TRAIN, run_train, start_train, wait_for_file
from dqn.checkpoint import load_checkpoint

# A short CartPole run that learns from step 500 and checkpoints every 1,000 steps.
SHORT = [
    "experiment=cartpole",
    "hw.num_envs=2",
    "agent.learning_starts=500",
    "agent.train_freq=4",
    "agent.gradient_steps=1",
    "agent.batch_size=32",
    "log_interval_steps=100",
    "eval.interval_steps=100000",
    "eval.episodes=2",
    "eval.num_envs=2",
    "checkpoint.interval_steps=1000",
]


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(s.step, s.value) for s in events.Scalars(tag)]


def kill_after_first_checkpoint(proc, run_dir):
    """SIGKILL the run as soon as its first checkpoint is on disk (no chance to save more)."""
    wait_for_file(run_dir, "checkpoints/last.pt", proc)
    proc.kill()
    proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agent", "num_envs", "interval"),
    [
        ("dqn", 2, 2000),
        ("rainbow", 2, 2000),
        # One env, checkpoint at 2,002: (2002 - 500) % 4 = 2, so the first step after the
        # resume owes no update, and noisy nets must not redraw their acting noise there.
        ("rainbow", 1, 2002),
    ],
)
def test_killed_run_resumed_equals_the_uninterrupted_run(tmp_path, agent, num_envs, interval):
    """With `checkpoint.exact_resume` and the replay saved, a 4,000-step run killed after its
    first checkpoint and resumed with `resume=<dir>` to 4,000 logs exactly the losses and
    returns of the same run left alone."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = [
        *[arg for arg in SHORT if not arg.startswith("hw.num_envs=")],
        f"hw.num_envs={num_envs}",
        f"agent={agent}",
        "checkpoint.save_replay=true",
        "total_steps=4000",
        f"checkpoint.interval_steps={interval}",
        "checkpoint.exact_resume=true",
    ]
    result = run_train([*args, f"hydra.run.dir={whole}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    kill_after_first_checkpoint(start_train([*args, f"hydra.run.dir={cut}"], tmp_path), cut)
    result = run_train([f"resume={cut}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    for tag in ("losses/td_loss", "losses/q_values", "charts/episodic_return"):
        assert scalars(cut, tag) == scalars(whole, tag), tag  # same steps, same values
    summary = json.loads((cut / "summary.json").read_text())
    assert len(summary["resumes"]) == 1 and interval <= summary["resumes"][0] <= interval + 1
    assert summary["env_steps"] >= 4000
    assert summary["updates"] == json.loads((whole / "summary.json").read_text())["updates"]
    assert list(cut.glob(".hydra/resumed_*/overrides.yaml"))  # the original .hydra is kept
    original = (cut / ".hydra" / "overrides.yaml").read_text().splitlines()
    assert not [line for line in original if line.startswith("- resume=")]


@pytest.mark.slow
def test_checkpoints_do_not_change_what_the_agent_sees(tmp_path):
    """Same seed, synchronous stepping: a run that checkpoints every 1,000 steps logs the same
    losses and game returns, step for step, as one that never checkpoints before its end."""
    runs = {
        "often": "checkpoint.interval_steps=1000",
        "never": "checkpoint.interval_steps=10000000",
    }
    for name, every in runs.items():
        result = run_train(
            [*SHORT, "total_steps=4000", every, f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
    for tag in ("losses/td_loss", "losses/q_values", "charts/episodic_return"):
        often, never = scalars(tmp_path / "often", tag), scalars(tmp_path / "never", tag)
        assert often and often == never, tag


@pytest.mark.slow
def test_resuming_with_more_steps_keeps_the_schedules_of_the_steps_taken(tmp_path):
    """Epsilon annealed over the whole run (exploration_fraction=1) reaches its floor at the
    first total_steps; resumed with twice the steps it stays there instead of jumping back up."""
    run_dir = tmp_path / "run"
    args = [*SHORT, "agent.exploration_fraction=1.0", f"hydra.run.dir={run_dir}"]
    assert run_train([*args, "total_steps=2000"], cwd=tmp_path).returncode == 0
    before = scalars(run_dir, "charts/epsilon")
    result = run_train([f"resume={run_dir}", "total_steps=4000"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    after = scalars(run_dir, "charts/epsilon")
    assert after[: len(before)] == before  # the steps taken keep their values
    # The last value logged is that of a step or two before 2000 (about 0.0405). Before this
    # rule the resumed run went back up to 1 - 0.96 * 2000 / 4000 = 0.52.
    assert 2000 <= before[-1][0] <= 2001 and before[-1][1] < 0.041
    floor = pytest.approx(0.04)  # experiment=cartpole's exploration_final_eps
    assert [value for _, value in after[len(before) :]] == [floor] * (len(after) - len(before))


def test_noisy_nets_redraw_their_noise_while_a_resumed_run_refills(tmp_path):
    """A resumed Rainbow run without its replay collects agent.learning_starts steps before it
    learns again; meanwhile its acting noise is redrawn once per train_freq steps, as the
    updates would have done, instead of playing the whole refill on one draw."""
    from conftest import compose_config
    from dqn.config import load_run_config
    from dqn.networks import NoisyLinear
    from dqn.trainer import Trainer

    def trainer(total_steps):
        cfg = load_run_config(
            compose_config([*SHORT, "agent=rainbow", f"total_steps={total_steps}"])
        )
        return Trainer(cfg, tmp_path / "run")

    first = trainer(1000)
    first.train()
    first.close()
    resumed = trainer(1400)  # 400 of the 500 refill steps
    updates = resumed.state.updates
    layer = next(m for m in resumed.agent.q_net.modules() if isinstance(m, NoisyLinear))
    draws = []
    original = resumed.agent.reset_noise

    def recording_reset_noise():
        original()
        draws.append(layer.noise_out.clone())

    resumed.agent.reset_noise = recording_reset_noise
    resumed.train()
    resumed.close()
    assert resumed.state.updates == updates  # still refilling: no update yet
    assert 90 <= len(draws) <= 101  # ~400 steps / train_freq 4
    assert all(not torch.equal(a, b) for a, b in itertools.pairwise(draws))


def short_trainer(run_dir, *overrides):
    """A Trainer of SHORT's CartPole run in this process."""
    from conftest import compose_config
    from dqn.config import load_run_config
    from dqn.trainer import Trainer

    return Trainer(load_run_config(compose_config([*SHORT, *overrides])), run_dir)


def test_a_handler_that_exits_waits_for_the_step_boundary(tmp_path):
    """A scheduler's handler that ends the process (submitit's requeue on SIGUSR2 raises
    SystemExit) runs between steps, never inside an update, so `last.pt` is whole: its update
    count is that of the updates that ran to their end."""

    def requeue(signum, frame):
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue)
    trainer = short_trainer(tmp_path / "run", "total_steps=3000")
    real_update = trainer.agent.update
    calls, finished = [], []

    def update(batch):
        calls.append(1)
        if len(calls) == 20:
            os.kill(os.getpid(), signal.SIGUSR2)  # arrives in the middle of this update
        result = real_update(batch)
        finished.append(1)
        return result

    trainer.agent.update = update
    try:
        with pytest.raises(SystemExit):
            trainer.train()
    finally:
        signal.signal(signal.SIGUSR2, previous)
        trainer.close()
    assert len(calls) == len(finished) >= 20
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved.updates == len(finished) and saved.env_steps < 3000
    assert signal.getsignal(signal.SIGUSR2) is previous


def test_exact_resume_without_the_replay_is_warned_about(tmp_path, caplog):
    trainer = short_trainer(tmp_path / "run", "total_steps=1000", "checkpoint.exact_resume=true")
    trainer.close()
    assert "without checkpoint.save_replay=true a resumed run refills" in caplog.text


@pytest.mark.slow
def test_restart_in_the_run_directory_resumes_without_the_replay(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SHORT, f"hydra.run.dir={run_dir}"]
    assert run_train([*args, "total_steps=1500"], cwd=tmp_path).returncode == 0
    result = run_train([*args, "total_steps=3000"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "Resuming from" in log and "refilling it for agent.learning_starts=500" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    [resumed] = summary["resumes"]
    assert 1500 <= resumed <= 1501 and summary["env_steps"] >= 3000
    # No update while the 500 refill steps were collected, then the ratio again.
    losses = [step for step, _ in scalars(run_dir, "losses/td_loss")]
    assert not [s for s in losses if resumed < s <= resumed + 500]
    assert max(losses) >= 2900


@pytest.mark.slow
def test_changed_agent_key_on_resume_is_named(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        run_train([*SHORT, "total_steps=1000", f"hydra.run.dir={run_dir}"], cwd=tmp_path).returncode
        == 0
    )
    result = run_train(
        [*SHORT, "total_steps=2000", "agent.lr=0.01", f"hydra.run.dir={run_dir}"], cwd=tmp_path
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Error:") and "agent.lr=0.001" in message and "0.01" in message
    result = run_train([f"resume={run_dir}", "agent.gamma=0.5"], cwd=tmp_path)
    assert result.returncode == 2
    assert "agent.gamma cannot change" in result.stderr
    result = run_train([f"resume={run_dir}", "experiment=cartpole"], cwd=tmp_path)
    assert result.returncode == 2 and "experiment cannot change" in result.stderr
    result = run_train([f"resume={run_dir}", "hw=cpu", "total_steps=1500"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]  # where and how long may change
    result = run_train([f"resume={tmp_path / 'nowhere'}"], cwd=tmp_path)
    assert result.returncode == 2 and "holds no checkpoints/last.pt" in result.stderr


@pytest.mark.slow
def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        run_train([*SHORT, "total_steps=2000", f"hydra.run.dir={run_dir}"], cwd=tmp_path).returncode
        == 0
    )
    last = run_dir / "checkpoints" / "last.pt"
    previous_steps = load_checkpoint(run_dir / "checkpoints" / "last.prev.pt").env_steps
    last.write_bytes(last.read_bytes()[:1000])  # a torn write
    result = run_train([f"resume={run_dir}", "total_steps=3000"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"Checkpoint {last} is truncated or corrupt" in log
    assert json.loads((run_dir / "summary.json").read_text())["resumes"] == [previous_steps]


def test_sigterm_checkpoints_then_ends_as_the_signal_asks(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN), *SHORT, "total_steps=10000000", f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_file(run_dir, "checkpoints/last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGTERM"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").env_steps == summary["env_steps"]


@pytest.mark.slow
def test_full_disk_keeps_the_previous_checkpoint_and_says_why(tmp_path):
    """A replay snapshot larger than a file-size limit (what a full disk does to a write):
    the run stops with one sentence, and the checkpoint before it is whole."""
    import resource

    run_dir = tmp_path / "run"
    assert (
        run_train([*SHORT, "total_steps=2000", f"hydra.run.dir={run_dir}"], cwd=tmp_path).returncode
        == 0
    )
    steps = load_checkpoint(run_dir / "checkpoints" / "last.pt").env_steps

    def small_files():  # writes past 1.5 MB fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    # Continue the run with replay snapshots (2.7 MB for CartPole's 100k-transition replay).
    result = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            *SHORT,
            "total_steps=4000",
            "checkpoint.save_replay=true",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=small_files,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: Could not write") and "replay.npz" in message
    assert f"last.pt (step {steps}) is intact" in message and f"resume={run_dir}" in message
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").env_steps == steps
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_at_random_moments_never_corrupts_or_double_counts(tmp_path):
    """12 SIGKILLs, 4 of them while a checkpoint or replay snapshot is being written: after
    each, every checkpoint file loads, and the restart resumes from the newest complete one;
    at the end the run has its exact step count and no logged step twice."""
    from dqn.checkpoint import load_arrays

    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    # Long enough never to finish while it is being killed; the last restart shortens it.
    args = [
        *SHORT,
        "total_steps=1000000",
        "checkpoint.interval_steps=250",
        "checkpoint.save_replay=true",
        f"hydra.run.dir={run_dir}",
    ]
    rng = np.random.default_rng(0)
    resumed_at = []
    for attempt in range(12):
        expected = None
        if (checkpoints / "last.pt").exists():
            expected = load_checkpoint(checkpoints / "last.pt").env_steps
        proc = start_train(args, tmp_path)
        if attempt % 3 == 2:  # kill while a file is being written
            deadline = time.monotonic() + 120
            while not list(checkpoints.glob(".*.tmp")) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(4.0, 10.0))
        assert proc.poll() is None, "the run finished before it was killed"
        proc.kill()
        proc.wait(timeout=60)
        for path in checkpoints.glob("*.pt"):
            load_checkpoint(path)  # raises on a torn file
        if (checkpoints / "replay.npz").exists():
            load_arrays(checkpoints / "replay.npz")
        if expected is not None:
            resumed_at.append(expected)
    resumed_at.append(load_checkpoint(checkpoints / "last.pt").env_steps)
    end = resumed_at[-1] + 1000
    result = run_train([f"resume={run_dir}", f"total_steps={end}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(checkpoints.glob(".*.tmp"))  # leftovers of torn writes are cleared

    summary = json.loads((run_dir / "summary.json").read_text())
    assert end <= summary["env_steps"] <= end + 1  # 2 envs step together
    # Each restart resumed from the checkpoint that was newest when it started; a restart
    # killed before its first checkpoint leaves no trace, so the next one resumes there too.
    lineage = [step for i, step in enumerate(resumed_at) if i == 0 or step != resumed_at[i - 1]]
    assert summary["resumes"] == lineage
    steps = [step for step, _ in scalars(run_dir, "losses/td_loss")]
    assert steps == sorted(set(steps))  # no step logged twice, none out of order
    assert steps[-1] >= end - 100


def test_a_torn_summary_leaves_the_run_to_resume_instead_of_skipping_it(tmp_path):
    """A finished run is skipped by its summary.json; one cut while being written is not."""
    from dqn.resume import finished_run

    run_dir = tmp_path / "run"
    trainer = short_trainer(run_dir, "total_steps=600")
    trainer.train()
    trainer.close()
    summary = (run_dir / "summary.json").read_text()
    finished = finished_run(run_dir, trainer.cfg)
    assert finished is not None and finished["env_steps"] >= 600  # 2 envs step together
    (run_dir / "summary.json").write_text(summary[: len(summary) // 2])
    assert finished_run(run_dir, trainer.cfg) is None


def test_a_finished_run_is_known_by_its_summary_without_its_checkpoints(tmp_path):
    """A suite whose finished runs lost their checkpoints (deleted to save disk, or records
    copied to another machine) still skips them, by the config their summary saved; a command
    with another config is refused, not skipped."""
    from conftest import compose_config
    from dqn.config import ConfigError, load_run_config
    from dqn.resume import finished_run

    run_dir = tmp_path / "run"
    trainer = short_trainer(run_dir, "total_steps=600")
    trainer.train()
    trainer.close()
    summary = json.loads((run_dir / "summary.json").read_text())
    # A summary that saved no config is checked against the last checkpoint's.
    without = {key: value for key, value in summary.items() if key != "config"}
    (run_dir / "summary.json").write_text(json.dumps(without))
    assert finished_run(run_dir, trainer.cfg) == without
    (run_dir / "summary.json").write_text(json.dumps(summary))
    shutil.rmtree(run_dir / "checkpoints")
    assert finished_run(run_dir, trainer.cfg) == summary
    assert summary["config"]["total_steps"] == 600
    longer = load_run_config(compose_config([*SHORT, "total_steps=5000"]))
    assert finished_run(run_dir, longer) is None  # more steps asked: not finished
    other = load_run_config(compose_config([*SHORT, "total_steps=600", "agent.lr=0.5"]))
    with pytest.raises(ConfigError, match=r"summary.json was written with agent.lr="):
        finished_run(run_dir, other)
