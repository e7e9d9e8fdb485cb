"""Every mistake a user can make in a config ends in one clear message and a non-zero exit,
before any training starts."""

import pytest

from conftest import run_train

CASES = [
    ("agent.lr=abc", "agent.lr"),  # wrong type
    ("agent.lerning_rate=1", "agent.lerning_rate"),  # unknown key
    ("+agent.lerning_rate=1", "agent.lerning_rate"),  # unknown key added with +
    ("+network.widht=3", "network.widht"),
    ("env=spaceinvaders", "env/spaceinvaders"),  # unknown group option
    ("agent.lr=0", "agent.lr must be > 0"),  # out of range
    ("agent.gamma=1.5", "agent.gamma must be in (0, 1]"),
    ("agent.batch_size=0", "agent.batch_size must be >= 1"),
    ("agent.exploration_fraction=0", "agent.exploration_fraction"),
    ("hw.num_envs=0", "hw.num_envs must be >= 1"),
    ("hw.precision=fp8", "hw.precision"),
    ("env.id=not_a_game", "env.id='not_a_game' is not an ALE game"),  # missing game
    ("hw=t4", "hw.device=cuda but PyTorch"),  # CUDA asked for where there is none
    ("env=cartpole", "network: NatureCNN needs image observations"),
    ("hw.replay_memory_gib=100000", "hw.replay_memory_gib"),  # replay larger than memory
]


@pytest.mark.parametrize(("override", "message"), CASES)
def test_bad_config_exits_non_zero_with_one_message(tmp_path, override, message):
    result = run_train([override, f"hydra.run.dir={tmp_path}"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "summary.json").exists()
