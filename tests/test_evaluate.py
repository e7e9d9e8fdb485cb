"""scripts/evaluate.py on real checkpoints, and the checkpoints it must refuse."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from dqn.checkpoint import PolicyFile
from dqn.config import compose_config, load_run_config
from dqn.trainer import Trainer

EVALUATE = REPO / "scripts" / "evaluate.py"


def run_evaluate(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EVALUATE), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained Space Invaders agent saved the way training saves it."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_run_config(compose_config(["hw.num_envs=2", "eval.num_envs=1", "seed=7"]))
    trainer = Trainer(cfg, run_dir)
    trainer.save("last.pt")
    trainer.close()
    return run_dir / "checkpoints" / "last.pt"


def test_evaluate_writes_the_protocol_and_figures_beside_the_checkpoint(checkpoint, tmp_path):
    result = run_evaluate([f"checkpoint={checkpoint}", "episodes=3", "num_envs=3"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(checkpoint.with_name("last.eval.json").read_text())
    assert {"mean", "std", "min", "max", "episodes", "protocol"} <= set(figures)
    assert figures["episodes"] == 3 and len(figures["returns"]) == 3
    assert figures["min"] <= figures["mean"] <= figures["max"]
    assert figures["protocol"]["epsilon"] == 0.05 and figures["protocol"]["noop_max"] == 30
    assert "first_life_mean" in figures
    assert figures["seed"] == 7  # the agent's training seed; the protocol's seeds the games
    assert figures["env_steps"] == 0 and figures["env_frames"] == 0
    assert figures["training_hours"] is not None and figures["training_hours"] >= 0
    assert "over 3 games" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written where it was called from


def test_checkpoint_of_another_game_is_refused_in_one_sentence(checkpoint, tmp_path):
    result = run_evaluate([f"checkpoint={checkpoint}", "env_id=pong"], tmp_path)
    assert result.returncode == 2
    assert "was trained on space_invaders, not pong" in result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoint_whose_weights_do_not_fit_its_network_is_refused(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["network"]["features_dim"] = 256
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    result = run_evaluate([f"checkpoint={other}"], tmp_path)
    assert result.returncode == 2
    assert "weights do not fit the network" in result.stderr


def test_truncated_checkpoint_is_refused(checkpoint, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    result = run_evaluate([f"checkpoint={cut}"], tmp_path)
    assert result.returncode == 2
    assert "truncated or corrupt" in result.stderr


class Payload:
    """An object whose unpickling would run a shell command."""

    def __reduce__(self):
        import os

        return (os.system, ("echo PWNED",))


def test_checkpoint_carrying_a_pickled_object_is_refused_never_executed(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "atari-dqn-checkpoint/1", "x": Payload()}, evil)
    result = run_evaluate([f"checkpoint={evil}"], tmp_path)
    assert result.returncode == 2
    assert "refused, not executed" in result.stderr
    assert "PWNED" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "checkpoint is required"),
        (["episodes=0"], "episodes must be >= 1, got 0"),
        pytest.param(
            ["device=cuda"],
            "device=cuda but PyTorch",
            marks=pytest.mark.skipif(
                torch.cuda.is_available(), reason="this machine has a CUDA GPU"
            ),
        ),
    ],
)
def test_bad_evaluate_arguments_end_in_one_sentence(checkpoint, tmp_path, args, message):
    if args:
        args = [f"checkpoint={checkpoint}", *args]
    result = run_evaluate(args, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_video_of_the_best_game_is_a_full_colour_browser_mp4(tmp_path):
    """A Rainbow checkpoint (noisy, dueling, C51 head) rebuilt and filmed in colour."""
    import imageio.v2 as imageio

    run_dir = tmp_path / "run"
    cfg = load_run_config(compose_config(["agent=rainbow", "hw.num_envs=2", "eval.num_envs=1"]))
    trainer = Trainer(cfg, run_dir)
    trainer.save("last.pt")
    trainer.close()
    checkpoint = run_dir / "checkpoints" / "last.pt"
    result = run_evaluate(
        [f"checkpoint={checkpoint}", "episodes=2", "num_envs=2", "video=true"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    video = run_dir / "checkpoints" / "last.best.mp4"
    figures = json.loads(checkpoint.with_name("last.eval.json").read_text())
    assert figures["video"] == str(video) and figures["episodes"] == 2
    assert not list(video.parent.glob(".*part.mp4"))  # the other game's file is gone
    reader = imageio.get_reader(video)
    meta = reader.get_meta_data()
    frames = list(reader.iter_data())
    reader.close()
    assert meta["codec"] == "h264" and meta["fps"] == 15
    assert len(frames) > 100  # a whole game of Space Invaders, one frame per agent step
    assert frames[0].shape == (420, 320, 3)  # 210 x 160 screen doubled
    colour = frames[len(frames) // 2].astype(int)
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 30  # not grayscale


EXPORT = REPO / "scripts" / "export.py"


@pytest.fixture(scope="module")
def rainbow_checkpoint(tmp_path_factory) -> Path:
    """A Rainbow agent (noisy dueling C51 head) saved the way training saves it, its noise
    scales and weights moved off their initial values so the export has something to keep."""
    run_dir = tmp_path_factory.mktemp("rainbow")
    cfg = load_run_config(
        compose_config(
            ["agent=rainbow", "hw.num_envs=2", "eval.num_envs=1", "agent.buffer_size=1000"]
        )
    )
    trainer = Trainer(cfg, run_dir)
    with torch.no_grad():
        for parameter in trainer.agent.q_net.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    trainer.save("last.pt")
    trainer.close()
    return run_dir / "checkpoints" / "last.pt"


def test_exported_policy_is_small_and_acts_like_the_checkpoint(rainbow_checkpoint, tmp_path):
    """scripts/export.py keeps the evaluation weights in float16: a fraction of the size, the
    same Q-values up to float16 rounding, the run's config beside it as YAML."""
    from dqn.evaluation import load_agent

    policy = tmp_path / "pretrained" / "agent.pt"
    result = subprocess.run(
        [sys.executable, str(EXPORT), str(rainbow_checkpoint), str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert policy.stat().st_size < rainbow_checkpoint.stat().st_size / 6
    config = policy.with_suffix(".yaml").read_text()
    assert "noisy_nets: true" in config and "space_invaders" in config

    full, run, _ = load_agent(rainbow_checkpoint, torch.device("cpu"))
    shipped, shipped_run, record = load_agent(policy, torch.device("cpu"))
    assert shipped_run == run and record.env_steps == 0
    assert isinstance(record, PolicyFile)
    weights = record.q_net
    assert weights["head.advantage.0.weight_mu"].dtype == torch.float16
    assert not [name for name in weights if "sigma" in name or "noise" in name]
    frames = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad(), full.evaluating(), shipped.evaluating():
        q_full = full.q_values(full.q_net(frames))
        q_shipped = shipped.q_values(shipped.q_net(frames))
        # Noise scales were not shipped: they are 0, so training mode acts with the means too.
        q_train_mode = shipped.q_values(shipped.q_net.train()(frames))
    assert q_full.std() > 0.01  # the Q-values differ between states and actions
    torch.testing.assert_close(q_shipped, q_full, atol=2e-3 * q_full.abs().max().item(), rtol=0)
    torch.testing.assert_close(q_train_mode, q_shipped)


@pytest.mark.slow
def test_evaluate_scores_a_policy_file_into_out_dir(rainbow_checkpoint, tmp_path):
    policy = tmp_path / "agent.pt"
    subprocess.run(
        [sys.executable, str(EXPORT), str(rainbow_checkpoint), str(policy)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    out_dir = tmp_path / "results"
    result = run_evaluate(
        [
            f"checkpoint={policy}",
            f"out_dir={out_dir}",
            "episodes=2",
            "num_envs=2",
            "max_episode_frames=2000",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((out_dir / "agent.eval.json").read_text())
    assert figures["episodes"] == 2 and figures["checkpoint"] == str(policy)
    assert not policy.with_name("agent.eval.json").exists()


def test_a_policy_file_cannot_resume_a_run(rainbow_checkpoint, tmp_path):
    from dqn.checkpoint import load_latest
    from dqn.config import ConfigError

    policy = tmp_path / "checkpoints" / "last.pt"
    subprocess.run(
        [sys.executable, str(EXPORT), str(rainbow_checkpoint), str(policy)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pytest.raises(ConfigError, match=r"is a policy file .* cannot resume a run"):
        load_latest(policy.parent)
