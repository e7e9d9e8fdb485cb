"""The agents shipped in dqn/pretrained/: packaged, loadable, and as good as their reference
evaluations say (within what two games can show)."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import REPO
from dqn import PRETRAINED_DIR
from dqn.checkpoint import PolicyFile, load_checkpoint

# name -> the game, the least env steps of its run, what its agent config must say, and a score
# that each of two evaluation games must beat: well above random play (Space Invaders: twice
# the 148 points of random play; Pong: a won game, where random play scores -20.7; Mnih et al.
# 2015).
AGENTS: dict[str, tuple[str, int, dict[str, object], float]] = {
    "space_invaders_c51": (
        "space_invaders",
        2_500_000,
        {"prioritized_replay": True, "n_step": 3, "distributional": True},
        2 * 148.0,
    ),
    "pong_fast_dqn": ("pong", 1_500_000, {"prioritized_replay": True, "n_step": 3}, 0.0),
}
EXTENSIONS = (".pt", ".yaml", ".eval.json", ".png")


@pytest.mark.parametrize("name", AGENTS)
def test_shipped_agent_is_a_small_float16_policy_file_of_its_game(name):
    game, min_steps, agent_keys, _ = AGENTS[name]
    path = PRETRAINED_DIR / f"{name}.pt"
    policy = load_checkpoint(path)
    assert isinstance(policy, PolicyFile)
    assert path.stat().st_size < 10e6
    assert policy.config["env"]["id"] == game
    assert {key: policy.config["agent"][key] for key in agent_keys} == agent_keys
    assert policy.env_steps >= min_steps
    assert all(t.dtype == torch.float16 for t in policy.q_net.values() if t.is_floating_point())


@pytest.mark.parametrize("name", AGENTS)
def test_reference_evaluation_is_30_whole_games_with_the_protocol_and_budget(name):
    figures = json.loads((PRETRAINED_DIR / f"{name}.eval.json").read_text())
    assert figures["episodes"] == 30 and len(figures["returns"]) == 30
    assert figures["protocol"]["epsilon"] == 0.05 and figures["protocol"]["noop_max"] == 30
    assert figures["protocol"]["max_episode_frames"] == 108_000
    assert figures["protocol"]["repeat_action_probability"] == 0.0
    assert figures["mean"] == pytest.approx(sum(figures["returns"]) / 30)
    assert figures["env_frames"] == 4 * figures["env_steps"]
    assert 0 < figures["training_hours"] < 24


def test_wheel_carries_the_shipped_agent(tmp_path):
    # Built from a copy: setuptools leaves build/ in the source tree it builds.
    source = tmp_path / "source"
    shutil.copytree(REPO / "dqn", source / "dqn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("atari_dqn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"dqn/pretrained/{name}{ext}" for name in AGENTS for ext in EXTENSIONS} <= names
    assert "dqn/data/atari100k.json" in names  # the benchmark's reference scores


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_evaluate_plays_the_shipped_agent_well_and_leaves_the_package_as_shipped(tmp_path, name):
    before = {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            f"checkpoint={PRETRAINED_DIR / f'{name}.pt'}",
            "episodes=2",
            "num_envs=2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(
        (tmp_path / "outputs" / "evaluate" / name / f"{name}.eval.json").read_text()
    )
    assert figures["episodes"] == 2
    # Two whole games, each well above random play: the weights are a trained agent's.
    assert min(figures["returns"]) > AGENTS[name][3]
    assert {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()} == before
