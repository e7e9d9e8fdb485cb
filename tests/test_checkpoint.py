"""The checkpoint formats and the resume rules: typed payloads written and read back, the
policy a checkpoint ships, what a resumed run may change, and a package free of import circles."""

from __future__ import annotations

import ast
import dataclasses
from collections import deque
from pathlib import Path

import pytest
import torch

from conftest import REPO, compose_config
from dqn.checkpoint import (
    PolicyFile,
    RunState,
    TrainingCheckpoint,
    load_checkpoint,
    save_checkpoint,
    save_policy,
)
from dqn.config import ConfigError, config_dict, load_run_config
from dqn.envs import Episode
from dqn.resume import changeable_on_resume, check_same_run, typed_values


def a_checkpoint() -> TrainingCheckpoint:
    weights = {
        "torso.0.weight": torch.arange(6.0).reshape(2, 3),
        "head.0.weight_mu": torch.ones(2, 2),
        "head.0.weight_sigma": torch.full((2, 2), 0.5),
        "head.0.noise_in": torch.full((2,), 0.1),
        "head.0.steps": torch.tensor(7),
    }
    return TrainingCheckpoint(
        config={"env": {"id": "pong"}, "total_steps": 1000},
        obs_shape=(4, 84, 84),
        n_actions=6,
        agent={"q_net": weights, "target_net": weights, "optimizer": {}},
        rng={"numpy": {"state": 1}, "torch": torch.get_rng_state(), "cuda": []},
        state=RunState(
            env_steps=500,
            updates=40,
            episodes=3,
            best_eval_return=-20.0,
            wall_seconds=7200.0,
            last_eval_step=400,
            last_eval=[Episode(0, -21.0, 800, -21.0), Episode(1, -20.0, 900, -20.0)],
            recent_returns=deque([-21.0, -20.0], maxlen=100),
            metric_sums={"td_loss": 1.5},
            metric_count=3,
            games_seed=12,
            schedule_origin=(300, 0.25),
            resumes=[300],
            forgiven_updates=5,
            noise_round=77,
        ),
    )


def test_training_checkpoint_reads_back_as_written(tmp_path):
    written = a_checkpoint()
    save_checkpoint(written, tmp_path / "last.pt")
    read = load_checkpoint(tmp_path / "last.pt")
    assert isinstance(read, TrainingCheckpoint)
    assert read.state == written.state
    assert read.state.recent_returns.maxlen == 100
    assert (read.env_steps, read.obs_shape, read.wall_seconds) == (500, (4, 84, 84), 7200.0)
    assert read.training_hours == 2.0
    assert torch.equal(read.agent["q_net"]["torso.0.weight"], torch.arange(6.0).reshape(2, 3))


def test_every_field_of_the_run_state_is_saved_and_read_back(tmp_path):
    written = a_checkpoint().state
    fresh = RunState()
    names = [f.name for f in dataclasses.fields(RunState)]
    # The example sets every field away from its default, so the comparison below covers each
    # one, a field added later included (this line fails until the example sets it).
    assert [name for name in names if getattr(written, name) == getattr(fresh, name)] == []
    save_checkpoint(a_checkpoint(), tmp_path / "last.pt")
    read = load_checkpoint(tmp_path / "last.pt")
    assert isinstance(read, TrainingCheckpoint)
    assert {name: getattr(read.state, name) for name in names} == {
        name: getattr(written, name) for name in names
    }


def test_the_file_header_is_read_off_the_state(tmp_path):
    payload = a_checkpoint().to_payload()
    header = {key: payload[key] for key in ("env_steps", "updates", "episodes")}
    assert header == {"env_steps": 500, "updates": 40, "episodes": 3}
    assert payload["eval_return_mean"] == -20.5  # the mean of the latest evaluation's games
    assert payload["best_eval_return"] == -20.0


def test_a_checkpoint_of_the_first_layout_resumes_with_its_counters(tmp_path):
    # The first layout kept the counters in the header and the rest under "progress".
    payload = a_checkpoint().to_payload()
    state = payload.pop("state")
    payload["progress"] = {
        key: state[key]
        for key in ("last_eval_step", "last_eval", "recent_returns", "games_seed", "wall_seconds")
    }
    torch.save(payload, tmp_path / "old.pt")
    read = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(read, TrainingCheckpoint)
    assert (read.env_steps, read.updates, read.episodes, read.wall_seconds) == (500, 40, 3, 7200.0)
    assert read.state.games_seed == 12 and read.eval_return_mean == -20.5
    assert read.state.schedule_origin == (0, 0.0) and read.state.resumes == []  # not recorded


def test_policy_keeps_the_means_in_float16_and_the_run_record(tmp_path):
    policy = save_policy(a_checkpoint(), tmp_path / "agent.pt")
    read = load_checkpoint(tmp_path / "agent.pt")
    assert isinstance(read, PolicyFile)
    assert sorted(read.q_net) == ["head.0.steps", "head.0.weight_mu", "torso.0.weight"]
    assert read.q_net["torso.0.weight"].dtype == torch.float16
    assert read.q_net["head.0.steps"].dtype == torch.int64  # integers are not cast
    assert (read.env_steps, read.wall_seconds, read.config) == (500, 7200.0, policy.config)
    again = save_policy(read, tmp_path / "again.pt", torch.float32)  # a policy of a policy
    assert again.q_net["torso.0.weight"].dtype == torch.float32


def test_a_damaged_field_is_refused_naming_the_file(tmp_path):
    payload = a_checkpoint().to_payload()
    payload["obs_shape"] = "four by eighty-four"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"bad\.pt has a damaged field"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    ("key", "changeable"),
    [
        ("total_steps", True),
        ("hw", True),
        ("hw.device", True),
        ("eval.episodes", True),
        ("checkpoint.save_replay", True),
        ("agent.lr", False),
        ("seed", False),
        ("env", False),
        ("hwx", False),  # a prefix of a name is not the group
    ],
)
def test_what_a_resumed_run_may_change(key, changeable):
    assert changeable_on_resume(key) is changeable


def test_typed_values_are_the_composed_values_of_the_keys_typed():
    overrides = ["hw=cpu", "total_steps=5000", "resume=outputs/run", "experiment=pong"]
    cfg = compose_config(overrides)
    values = typed_values(cfg, overrides)
    assert values["total_steps"] == 5000 and "resume" not in values
    assert values["hw"]["device"] == "cpu"  # a group: its whole composed node
    assert values["experiment"] is None  # no value of its own: the resume refuses it by name


def test_a_key_added_since_the_checkpoint_counts_at_its_default():
    """A run saved before agent.lr_decay_start existed resumes under a schema that has it while
    the key keeps its default (the behaviour the run was written with), and is refused by the
    key's name when this run sets it."""
    current = config_dict(load_run_config(compose_config([])))
    assert current["agent"]["lr_decay_start"] == 0.0
    saved = {**current, "agent": dict(current["agent"])}
    del saved["agent"]["lr_decay_start"]
    check_same_run(saved, current, Path("old/last.pt"))  # no error
    held = config_dict(
        load_run_config(compose_config(["agent.lr_schedule=linear", "agent.lr_decay_start=0.6"]))
    )
    saved["agent"]["lr_schedule"] = "linear"
    with pytest.raises(ConfigError, match=r"with agent\.lr_decay_start=0\.0 but this run has"):
        check_same_run(saved, held, Path("old/last.pt"))


def dqn_imports(path: Path) -> set[str]:
    """The `dqn.*` modules a source file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dqn."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dqn.")}
    return found


def test_the_package_has_no_import_circle():
    graph = {f"dqn.{p.stem}": dqn_imports(p) for p in (REPO / "dqn").glob("*.py")}
    graph.pop("dqn.__init__")

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    circular = sorted(module for module in graph if reaches(module, module, set()))
    assert circular == []
