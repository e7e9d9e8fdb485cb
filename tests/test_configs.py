"""Every sensible env x agent x network x hw combination composes and validates, and each
network runs a forward pass on its env's real observation shape."""

from pathlib import Path

import pytest
import torch

from conftest import CONF, REPO, compose_config, group_options
from dqn.config import (
    NETWORK_SCHEMAS,
    EnvKind,
    HardwareConfig,
    MLPConfig,
    NatureCNNConfig,
    load_run_config,
)
from dqn.envs import action_count, make_vector_env, observation_format
from dqn.networks import build_network

ENVS = group_options("env")
AGENTS = group_options("agent")
HWS = group_options("hw")
NETWORKS_FOR_KIND = {
    EnvKind.atari: ["nature_cnn", "dueling_cnn", "der_cnn"],
    EnvKind.classic: ["mlp"],
}


def test_default_config_is_space_invaders_dqn_on_cpu():
    run = load_run_config(compose_config())
    assert run.env.id == "space_invaders"
    assert isinstance(run.network, NatureCNNConfig)
    assert run.hw.device == "cpu"
    a = run.agent
    assert (a.batch_size, a.gamma, a.train_freq, a.target_update_interval) == (32, 0.99, 4, 1000)
    assert (a.exploration_initial_eps, a.exploration_final_eps) == (1.0, 0.01)
    assert a.exploration_fraction == 0.1 and a.learning_starts == 80_000


def sensible_networks(env: str) -> list[str]:
    return NETWORKS_FOR_KIND[compose_config([f"env={env}"]).env.kind]


@pytest.mark.parametrize("hw", HWS)
@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("env", ENVS)
def test_combination_composes_and_validates(env, agent, hw):
    for network in sensible_networks(env):
        run = load_run_config(
            compose_config([f"env={env}", f"agent={agent}", f"network={network}", f"hw={hw}"])
        )
        assert_values_of_the_file_hold(run, CONF / "hw" / f"{hw}.yaml", "hw")
        schema = {"mlp": "mlp", "der_cnn": "der_cnn"}.get(network, "nature_cnn")
        network_cfg = run.network
        assert isinstance(network_cfg, NETWORK_SCHEMAS[schema])
        assert network_cfg.dueling == (network == "dueling_cnn" or agent == "rainbow")


@pytest.mark.parametrize("env", ENVS)
def test_network_forward_on_the_env_observation(env):
    for network in sensible_networks(env):
        for agent in ("dqn", "rainbow"):
            check_forward(env, network, agent)


def check_forward(env: str, network: str, agent: str) -> None:
    run = load_run_config(compose_config([f"env={env}", f"network={network}", f"agent={agent}"]))
    envs = make_vector_env(run.env, num_envs=2)
    try:
        obs, _ = envs.reset(seed=0)
        net = build_network(
            run.network,
            observation_format(envs)[0],
            action_count(envs),
            **run.agent.head_kwargs(),
        )
        q = net(torch.as_tensor(obs))
    finally:
        envs.close()
    atoms = (run.agent.num_atoms,) if run.agent.distributional else ()
    assert q.shape == (2, action_count(envs), *atoms)
    assert torch.isfinite(q).all()


def assert_values_of_the_file_hold(run, path: Path, prefix: str = "") -> None:
    """Every value a config file sets (but its defaults list and Hydra's own keys) is the
    composed run's: no later default or group file overrides it."""
    from omegaconf import OmegaConf

    from dqn.config import config_dict
    from dqn.logger import flatten

    node = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(node, dict)
    set_here = flatten({k: v for k, v in node.items() if k not in ("defaults", "hydra")})
    composed = flatten(config_dict(run))
    for key, value in set_here.items():
        full = f"{prefix}.{key}" if prefix else key
        assert composed[full] == value, f"{path.name}: {full}"


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_presets_compose_with_every_value_they_set(experiment):
    run = load_run_config(compose_config([f"experiment={experiment}"]))
    assert_values_of_the_file_hold(run, CONF / "experiment" / f"{experiment}.yaml")


def test_cartpole_preset_sets_env_network_and_recipe():
    run = load_run_config(compose_config(["experiment=cartpole"]))
    assert run.env.id == "CartPole-v1" and isinstance(run.network, MLPConfig)
    assert run.total_steps == 50_000


def test_space_invaders_preset_adds_c51_and_a_large_replay_to_fast_dqn():
    run = load_run_config(compose_config(["experiment=space_invaders"]))
    fast = load_run_config(compose_config(["agent=fast_dqn"])).agent
    a = run.agent
    assert run.env.id == "space_invaders" and run.total_steps == 3_000_000
    assert a.distributional and a.buffer_size == 1_000_000
    assert (a.n_step, a.double_q, a.prioritized_replay, a.train_freq, a.lr) == (
        fast.n_step,
        fast.double_q,
        fast.prioritized_replay,
        fast.train_freq,
        fast.lr,
    )


def test_original_preset_keeps_its_hyperparameters_with_fixes():
    run = load_run_config(compose_config(["experiment=original"]))
    assert run.env.id == "space_invaders" and run.env.action_subset == [1, 2, 3, 4, 5]
    assert run.env.terminal_on_life_loss  # a training signal only: whole games are played
    a = run.agent
    assert (a.lr, a.train_freq, a.target_update_interval, a.double_q) == (2.5e-4, 3, 1000, True)
    assert a.exploration_schedule.value == "exponential" and a.exploration_decay == 0.99999975


def test_sweep_job_dir_names_stay_under_the_file_name_limit():
    from dqn.config import shorten

    assert shorten("agent.lr=0.001,seed=1", 150) == "agent.lr=0.001,seed=1"
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(shorten(long_a, 150)) == 159 and shorten(long_a, 150) != shorten(long_b, 150)


@pytest.mark.parametrize("hw", ["t4", "g6"])
def test_slurm_presets_request_a_gpu_and_requeue(hw):
    from hydra import compose, initialize_config_dir

    from dqn.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"hw={hw}", f"hydra/launcher=slurm_{hw}"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.max_num_timeout >= 10 and launcher.gpus_per_node == 1
    assert launcher.timeout_min > 0 and launcher.cpus_per_task >= 8 and launcher.mem_gb >= 32
    assert "partition" in launcher and launcher.partition is None  # the key to fill in


def _documented_defaults() -> dict[str, str]:
    """`key -> default` from the tables of docs/configuration.md."""
    rows = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def _schema_defaults() -> dict[str, object]:
    """`key -> default` of every field of the run's schemas, the network schemas merged."""
    import dataclasses

    from dqn.config import AgentConfig, CheckpointConfig, EnvConfig, EvalConfig, RunConfig

    groups = {
        "env": EnvConfig,
        "agent": AgentConfig,
        "eval": EvalConfig,
        "checkpoint": CheckpointConfig,
        "hw": HardwareConfig,
    }
    schemas = [(RunConfig, "")] + [(schema, f"{name}.") for name, schema in groups.items()]
    schemas += [(schema, "network.") for schema in NETWORK_SCHEMAS.values()]
    defaults: dict[str, object] = {}
    for schema, prefix in schemas:
        for f in dataclasses.fields(schema):
            if prefix == "" and f.name in {*groups, "network"}:
                continue  # a group, not a key
            value = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            defaults.setdefault(prefix + f.name, value)  # nature_cnn's value where both have one
    return defaults


def test_configuration_doc_lists_every_key_with_the_schema_default():
    import yaml
    from omegaconf import MISSING

    documented, schema = _documented_defaults(), _schema_defaults()
    assert sorted(documented) == sorted(schema)
    for key, default in schema.items():
        text = documented[key]
        if default == MISSING:
            assert text == "(required)", key
        elif hasattr(default, "value"):  # an enum
            assert text == default.value, key
        elif isinstance(default, bool) or default is None or isinstance(default, list):
            assert yaml.safe_load(text) == default, key
        elif isinstance(default, (int, float)):
            assert float(text.replace("_", "")) == default, key
        else:
            assert text == default, key


def _group_files() -> list[Path]:
    groups = ("env", "agent", "network", "hw")
    files = sorted(path for group in groups for path in (REPO / "conf" / group).glob("*.yaml"))
    return [REPO / "conf" / "config.yaml", *files]


@pytest.mark.parametrize("path", _group_files(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_config_files_state_only_what_differs_from_the_schema(path):
    """Each default is written once, in the schemas: a group file sets a key only to change it
    (experiment presets are whole recipes and may restate a value their source gives)."""
    from omegaconf import OmegaConf

    from dqn.logger import flatten

    raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
    assert isinstance(raw, dict)
    raw.pop("defaults", None)
    raw.pop("hydra", None)
    is_global = path.read_text().startswith("# @package _global_")
    values = flatten(raw if is_global or path.name == "config.yaml" else {path.parent.name: raw})
    schema = _schema_defaults()
    restated = {key: value for key, value in values.items() if schema.get(key) == value}
    assert restated == {}
