"""scripts/evaluate.py on real checkpoints, and the checkpoints it must refuse."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dqn.config import compose_config, load_run_config
from dqn.trainer import Trainer

from conftest import REPO

EVALUATE = REPO / "scripts" / "evaluate.py"


def run_evaluate(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EVALUATE), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained Space Invaders agent saved the way training saves it."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_run_config(compose_config(["hw.num_envs=2", "eval.num_envs=1"]))
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


@pytest.mark.parametrize(("args", "message"), [
    ([], "checkpoint is required"),
    (["episodes=0"], "episodes must be >= 1, got 0"),
    pytest.param(["device=cuda"], "device=cuda but PyTorch", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
])
def test_bad_evaluate_arguments_end_in_one_sentence(checkpoint, tmp_path, args, message):
    if args:
        args = [f"checkpoint={checkpoint}", *args]
    result = run_evaluate(args, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_video_of_the_best_game_is_a_full_colour_browser_mp4(tmp_path):
    """A Rainbow checkpoint (noisy, dueling, C51 head) rebuilt and filmed in colour."""
    import imageio.v2 as imageio

    run_dir = tmp_path / "run"
    cfg = load_run_config(compose_config(["agent=rainbow", "hw.num_envs=2", "eval.num_envs=1"]))
    trainer = Trainer(cfg, run_dir)
    trainer.save("last.pt")
    trainer.close()
    checkpoint = run_dir / "checkpoints" / "last.pt"
    result = run_evaluate([f"checkpoint={checkpoint}", "episodes=2", "num_envs=2", "video=true"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    video = run_dir / "checkpoints" / "last.best.mp4"
    figures = json.loads(checkpoint.with_name("last.eval.json").read_text())
    assert figures["video"] == str(video) and figures["episodes"] == 2
    assert not list(video.parent.glob(".*part.mp4"))  # the other game's file is gone
    reader = imageio.get_reader(video)
    meta = reader.get_meta_data()
    frames = [frame for frame in reader]
    reader.close()
    assert meta["codec"] == "h264" and meta["fps"] == 15
    assert len(frames) > 100  # a whole game of Space Invaders, one frame per agent step
    assert frames[0].shape == (420, 320, 3)  # 210 x 160 screen doubled
    colour = frames[len(frames) // 2].astype(int)
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 30  # not grayscale
