"""Real runs of scripts/train.py: outputs, TensorBoard read back, checkpoints, Ctrl-C, learning."""

import json
import signal
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TRAIN, run_train, wait_for_file
from dqn.checkpoint import TrainingCheckpoint, load_checkpoint
from dqn.networks import NatureCNN
from dqn.returns import updates_owed

SMOKE = [
    "total_steps=3000",
    "agent.learning_starts=1000",
    "hw.num_envs=2",
    "log_interval_steps=500",
    "eval.interval_steps=1500",
    "eval.episodes=2",
    "eval.num_envs=2",
    "checkpoint.interval_steps=1000",
]
CLEANRL_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/epsilon",
    "charts/SPS",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
}


@pytest.mark.slow
def test_space_invaders_smoke_run_writes_logs_checkpoints_and_summary(tmp_path):
    result = run_train(SMOKE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = list((tmp_path / "outputs" / "space_invaders" / "dqn").iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").read_text().count("eval at step") >= 2

    summary = json.loads((run_dir / "summary.json").read_text())
    steps = summary["env_steps"]
    assert steps >= 3000
    # One update per 4 steps after 1,000; those the very last step owes are left to a resumed
    # run (the last step of 2 envs adds at most 2 steps).
    owed = [updates_owed(n, 1000, 4, 1) for n in (steps - 2, steps)]
    assert owed[0] <= summary["updates"] <= owed[1]
    assert summary["episodes"] >= 1 and summary["wall_seconds"] > 0
    for key in ("eval_return_mean", "eval_return_std"):
        assert isinstance(summary[key], float)

    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert CLEANRL_TAGS | {"losses/action_gap"} <= set(events.Tags()["scalars"])
    assert "hyperparameters/text_summary" in events.Tags()["tensors"]
    td_loss = events.Scalars("losses/td_loss")
    assert td_loss and td_loss[0].step >= 1000  # no loss before learning starts

    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert isinstance(checkpoint, TrainingCheckpoint)
    assert checkpoint.env_steps == summary["env_steps"]
    assert checkpoint.config["env"]["id"] == "space_invaders"
    net = NatureCNN((4, 84, 84), 6)
    net.load_state_dict(checkpoint.agent["q_net"])
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    print(
        f"Space Invaders smoke run: {summary['steps_per_second']} env steps/s "
        f"({summary['env_steps']} steps, {summary['updates']} updates)"
    )


@pytest.mark.slow
def test_ctrl_c_saves_last_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TRAIN),
            "total_steps=1000000",
            "agent.learning_starts=500",
            "hw.num_envs=2",
            "log_interval_steps=100",
            f"hydra.run.dir={run_dir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job starts with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the run the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_file(run_dir, "events.out.tfevents.*", proc)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave a run behind when the test fails
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] and 0 < summary["env_steps"] < 1_000_000
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").env_steps == summary["env_steps"]


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["dqn", "rainbow"])
def test_cartpole_preset_solves_cartpole(tmp_path, agent):
    """experiment=cartpole solves CartPole-v1 (greedy eval mean >= 475 over 10 games after
    50k steps) with plain DQN and with every Rainbow component on."""
    started = time.monotonic()
    result = run_train(
        ["experiment=cartpole", f"agent={agent}", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        timeout=900,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(
        f"CartPole {agent}: eval {summary['eval_return_mean']} +- "
        f"{summary['eval_return_std']} after {summary['env_steps']} steps, {elapsed:.0f} s"
    )
    assert summary["env_steps"] == 50_000
    assert summary["eval_return_mean"] >= 475


def cartpole_updates_trainer(run_dir, *overrides):
    """A Trainer, in this process, of a CartPole run of 600 steps that learns from step 200 at
    one update per 4 steps: 99 updates (the 100th, owed by the last step, is left to a resumed
    run)."""
    from conftest import compose_config
    from dqn.config import load_run_config
    from dqn.trainer import Trainer

    base = [
        "experiment=cartpole",
        "total_steps=600",
        "agent.learning_starts=200",
        "agent.train_freq=4",
        "agent.gradient_steps=1",
        "eval.episodes=1",
        "eval.num_envs=1",
    ]
    return Trainer(load_run_config(compose_config([*base, *overrides])), run_dir)


def test_resets_come_every_reset_interval_updates(tmp_path):
    """agent.reset_interval counts updates: a CartPole run of 99 updates with an interval of 30
    resets after 30, 60 and 90."""
    trainer = cartpole_updates_trainer(
        tmp_path / "run", "agent.reset_interval=30", "agent.reset_shrink=0.8"
    )
    at = []
    trainer.agent.reset_parameters = lambda shrink: at.append((trainer.state.updates, shrink))
    trainer.train()
    trainer.close()
    assert trainer.state.updates == 99 and at == [(30, 0.8), (60, 0.8), (90, 0.8)]


def test_the_learning_rate_is_held_then_decayed_to_zero(tmp_path):
    """agent.lr_decay_start=0.5 on a 600-step run: Adam's rate stays at agent.lr (1e-3) to
    step 300, then falls linearly to 0 at step 600, as charts/learning_rate shows."""
    run_dir = tmp_path / "run"
    trainer = cartpole_updates_trainer(
        run_dir, "agent.lr_decay_start=0.5", "log_interval_steps=50", "hw.precision=fp32"
    )
    trainer.train()
    trainer.close()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    lr = {e.step: e.value for e in events.Scalars("charts/learning_rate")}
    assert {step: lr[step] for step in (100, 200, 250, 300)} == pytest.approx(
        {100: 1e-3, 200: 1e-3, 250: 1e-3, 300: 1e-3}
    )
    # Set at the update of step 448, 1e-3 * (1 - (448/600 - 0.5) / 0.5) = 5.067e-4.
    assert lr[450] == pytest.approx(1e-3 * (1 - (448 / 600 - 0.5) / 0.5), rel=1e-5)
    assert lr[550] < lr[500] < lr[450] and lr[550] == pytest.approx(1.7e-4, abs=2e-5)


def test_the_annealed_horizon_restarts_with_each_reset(tmp_path):
    """agent.anneal_updates=10 with resets every 30 updates: the horizon (10, 0.97) -> (3,
    0.997) is set before every update from the updates since the latest reset, so updates 0,
    30 and 60 sample at the start of the schedule and update 15 past its end."""
    from dqn.returns import annealed_horizon

    trainer = cartpole_updates_trainer(
        tmp_path / "run",
        "agent.n_step=10",
        "agent.gamma=0.997",
        "agent.anneal_updates=10",
        "agent.reset_interval=30",
    )
    horizons = []
    set_horizon = trainer.replay.set_horizon

    def record(n_step: int, gamma: float) -> None:
        horizons.append((n_step, gamma))
        set_horizon(n_step, gamma)

    trainer.replay.set_horizon = record
    trainer.train()
    trainer.close()
    assert len(horizons) == 99
    start, end = (
        annealed_horizon(10, 3, 0.97, 0.997, 0.0),
        annealed_horizon(10, 3, 0.97, 0.997, 1.0),
    )
    assert horizons[0] == horizons[30] == horizons[60] == start == (10, pytest.approx(0.97))
    assert horizons[15] == horizons[45] == end == (3, pytest.approx(0.997))
    assert horizons[5] == annealed_horizon(10, 3, 0.97, 0.997, 0.5)
    assert (trainer.replay.n_step, trainer.replay.gamma) == horizons[-1]


def test_an_atari_run_with_the_self_predictive_loss_logs_it_and_resumes_with_its_model(tmp_path):
    """experiment=atari100k with SPR on the small network, in this process: 200 updates log
    losses/spr_loss, the checkpoint holds SPR's model, and a Trainer on the same directory
    resumes with it."""
    import torch

    from conftest import compose_config
    from dqn.config import load_run_config
    from dqn.trainer import Trainer

    overrides = [
        "experiment=atari100k",
        "network=der_cnn",
        "agent.spr_weight=2",
        "agent.spr_steps=3",
        "agent.batch_size=8",
        "total_steps=400",
        "agent.learning_starts=200",
        "log_interval_steps=100",
        "eval.episodes=1",
        "eval.num_envs=1",
        "checkpoint.interval_steps=400",
    ]
    cfg = load_run_config(compose_config(overrides))
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    trainer.close()
    assert trainer.state.updates >= 199
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    spr_loss = [e.value for e in events.Scalars("losses/spr_loss")]
    assert spr_loss and all(0 < v <= 3 * 4 for v in spr_loss)  # 3 steps of at most 4
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert isinstance(checkpoint, TrainingCheckpoint)
    resumed = Trainer(cfg, tmp_path)
    assert resumed.agent.spr is not None and resumed.state.updates == trainer.state.updates
    for name, value in resumed.agent.spr.state_dict().items():
        assert torch.equal(value, checkpoint.agent["spr"][name])
    resumed.close()
