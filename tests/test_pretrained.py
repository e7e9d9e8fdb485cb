"""The Space Invaders agent shipped in dqn/pretrained/: packaged, loadable, and as good as its
reference evaluation says (within what two games can show)."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from dqn import PRETRAINED_DIR
from dqn.checkpoint import POLICY_FORMAT, load_checkpoint

from conftest import REPO

NAME = "space_invaders_rainbow"
AGENT = PRETRAINED_DIR / f"{NAME}.pt"
SHIPPED = [f"{NAME}.pt", f"{NAME}.yaml", f"{NAME}.eval.json", f"{NAME}.png"]
# Published full-game score of uniformly random play on Space Invaders (Mnih et al. 2015).
RANDOM_SCORE = 148.0


def test_shipped_agent_is_a_small_policy_file_of_a_rainbow_run_of_at_least_1m_steps():
    payload = load_checkpoint(AGENT)
    assert payload["format"] == POLICY_FORMAT
    assert AGENT.stat().st_size < 10e6
    assert payload["config"]["env"]["id"] == "space_invaders"
    assert payload["config"]["agent"]["distributional"] and payload["config"]["agent"]["noisy_nets"]
    assert payload["env_steps"] >= 1_000_000
    assert all(t.dtype == torch.float16 for t in payload["agent"]["q_net"].values()
               if t.is_floating_point())


def test_reference_evaluation_is_30_whole_games_with_the_protocol_stated():
    figures = json.loads((PRETRAINED_DIR / f"{NAME}.eval.json").read_text())
    assert figures["episodes"] == 30 and len(figures["returns"]) == 30
    assert figures["protocol"]["epsilon"] == 0.05 and figures["protocol"]["noop_max"] == 30
    assert figures["protocol"]["max_episode_frames"] == 108_000
    assert figures["protocol"]["repeat_action_probability"] == 0.0
    assert figures["mean"] == pytest.approx(sum(figures["returns"]) / 30)
    assert figures["first_life_mean"] < figures["mean"]


def test_wheel_carries_the_shipped_agent(tmp_path):
    # Built from a copy: setuptools leaves build/ in the source tree it builds.
    source = tmp_path / "source"
    shutil.copytree(REPO / "dqn", source / "dqn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("atari_dqn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"dqn/pretrained/{name}" for name in SHIPPED} <= names


def test_evaluate_plays_the_shipped_agent_well_and_leaves_the_package_as_shipped(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), f"checkpoint={AGENT}",
         "episodes=2", "num_envs=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "outputs" / "evaluate" / NAME / f"{NAME}.eval.json")
                         .read_text())
    assert figures["episodes"] == 2
    # Two whole games, each well above random play: the weights are a trained agent's.
    assert min(figures["returns"]) > 2 * RANDOM_SCORE
    assert {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()} == before
