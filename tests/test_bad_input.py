"""Every mistake a user can make in a config ends in one clear message and a non-zero exit,
before any training starts."""

import pytest
import torch

from conftest import run_train

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")

CASES = [
    ("agent.lr=abc", "agent.lr"),  # wrong type
    ("agent.lerning_rate=1", "agent.lerning_rate"),  # unknown key
    ("+agent.lerning_rate=1", "agent.lerning_rate"),  # unknown key added with +
    ("+network.widht=3", "network.widht"),
    ("env=spaceinvaders", "env/spaceinvaders"),  # unknown group option
    ("env=_atari", "env/_atari"),  # no shared base is offered as a game
    ("env.id=space_invader", "did you mean space_invaders"),  # a misspelt ROM
    ("agent.lr=0", "agent.lr must be > 0"),  # out of range
    ("agent.gamma=1.5", "agent.gamma must be in (0, 1]"),
    ("agent.batch_size=0", "agent.batch_size must be >= 1"),
    ("agent.exploration_fraction=0", "agent.exploration_fraction"),
    ("agent.lr_schedule=linear agent.lr_decay_start=1", "agent.lr_decay_start must be a share"),
    ("agent.lr_decay_start=0.5", "agent.lr_decay_start holds the rate before a linear decay"),
    ("experiment=pong agent.lr_schedule=constant", "agent.lr_decay_start=0 for a constant rate"),
    ("agent=rainbow agent.munchausen=true", "agent.munchausen needs scalar Q-values"),
    ("agent=double_dqn agent.munchausen=true", "set agent.double_q=false"),
    ("agent.munchausen=true agent.n_step=3", "set agent.n_step=1"),
    ("agent.target_update_interval=0 agent.tau=0.5", "agent.target_update_interval=0 has none"),
    (
        "agent.anneal_updates=100 agent.n_step=3 agent.n_step_final=5",
        "must be in [1, agent.n_step=3]",
    ),
    ("agent.anneal_updates=100 agent.n_step=3 agent.gamma_initial=0.999", "anneals up from it"),
    ("agent.anneal_updates=100 agent.n_step=3 agent.gamma=1.0", "with agent.gamma < 1"),
    ("agent=rainbow agent.anneal_updates=100", "set agent.prioritized_replay=false"),
    ("agent.random_shift_pad=-1", "agent.random_shift_pad must be >= 0"),
    ("agent.spr_weight=-1", "agent.spr_weight must be >= 0"),
    ("agent.spr_steps=0", "agent.spr_steps must be >= 1"),
    ("agent.spr_weight=2 hw.compile_mode=default", "set hw.compile_mode=null"),
    ("env=cartpole network=mlp agent.spr_weight=2", "agent.spr_weight needs a convolutional"),
    ("hw.num_envs=0", "hw.num_envs must be >= 1"),
    ("hw.precision=fp8", "hw.precision"),
    ("env.id=not_a_game", "env.id='not_a_game' is not an ALE game"),  # missing game
    pytest.param("hw=t4", "hw.device=cuda but PyTorch", marks=NO_CUDA),  # no CUDA here
    ("hw.device=gpu", "hw.device must be cpu, cuda, cuda:N or mps"),
    ("env=cartpole", "network: NatureCNN needs image observations"),
    ("env=cartpole network=mlp env.id=Pendulum-v1", "DQN needs discrete actions"),
    ("hw.replay_memory_gib=100000 agent.buffer_size=1000000000000", "hw.replay_memory_gib"),
    ("hw.replay_memory_gib=0.00001", "fewer than agent.batch_size"),
    ("seed=4000000000", "seed must be in"),
    ("env.repeat_action_probability=1", "env.repeat_action_probability"),
    ("network.features_dim=0", "network.features_dim must be >= 1"),
    ("network._target_=os.system", "network._target_='os.system' is not one of"),
    ("total_steps=1000", "agent.learning_starts (80000) must be below total_steps"),
]


def error_of(overrides: list[str], run_dir) -> str:
    """The sentence a run with these overrides stops with, met where scripts/train.py meets it:
    Hydra's composition, the config's validation (`load_run_config`), building the run
    (`Trainer`). AssertionError if the run would start."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from conftest import compose_config
    from dqn.config import ConfigError, load_run_config
    from dqn.trainer import Trainer

    try:
        Trainer(load_run_config(compose_config(overrides)), run_dir).close()
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        return str(e)
    raise AssertionError(f"{overrides} started a run")


@pytest.mark.parametrize(("overrides", "message"), CASES)
def test_bad_config_is_refused_with_one_message(tmp_path, overrides, message):
    assert message in error_of(overrides.split(), tmp_path)
    assert not (tmp_path / "summary.json").exists()


# One real process per way a bad config ends: Hydra's composition, the config's validation,
# and building the run.
EXITS = [
    ("env=spaceinvaders", "env/spaceinvaders"),
    ("agent.gamma=1.5", "agent.gamma must be in (0, 1]"),
    ("env=cartpole", "network: NatureCNN needs image observations"),
]


@pytest.mark.parametrize(("overrides", "message"), EXITS)
def test_bad_config_exits_non_zero_with_one_message(tmp_path, overrides, message):
    args = [*overrides.split(), f"hydra.run.dir={tmp_path}"]
    result = run_train(args, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "summary.json").exists()
