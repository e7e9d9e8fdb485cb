"""Shared helpers: Hydra composition of the real configs, and real runs of scripts/train.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from dqn.config import compose_config  # noqa: F401  (re-exported for the tests)

# Under pytest-xdist (`make test`, `make test-fast`: two workers on two cores) each worker and
# the runs it starts use one torch thread: two workers at two threads each would fight over the
# cores (OpenMP spin-waits), and two at one thread finish sooner than one at two.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TRAIN = REPO / "scripts" / "train.py"


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` imported as module `name`, so tests can call its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def group_options(group: str) -> list[str]:
    """The selectable options of a config group (files not starting with `_`)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


# The config groups a user picks from: conf/<group>/ directories, and Hydra's launcher group
# (its options from conf/hydra/launcher/ and from the installed launcher plugins).
GROUPS = ("env", "agent", "network", "hw", "experiment", "hparams_search")
LAUNCHER_PLUGINS = ("joblib", "submitit_local")


def hydra_group_options(group: str) -> list[str]:
    """Every option Hydra can select for `group` here: files in conf/, installed plugins' configs
    and the schemas registered in dqn/config.py."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dqn.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def config_defaults() -> dict[str, str]:
    """The option conf/config.yaml chooses for each of GROUPS that has one."""
    import yaml

    entries = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    return {
        group: option
        for entry in entries
        if isinstance(entry, dict)
        for group, option in entry.items()
        if group in GROUPS and option is not None
    }


def launcher_options() -> list[str]:
    """The launchers a sweep may name: the installed plugins and conf/hydra/launcher/ files."""
    return sorted([*LAUNCHER_PLUGINS, *group_options("hydra/launcher")])


def run_train(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run scripts/train.py in a subprocess (a real Hydra launch) and capture its output."""
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start scripts/train.py in the background (to signal or kill it), stderr piped."""
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(folder: Path, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> Path:
    """Wait until a file matching `pattern` (a glob) exists under `folder`, and return it;
    fail if `proc` ends first or nothing appears within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := sorted(folder.glob(pattern))):
        if proc.poll() is not None:
            output = proc.stderr.read()[-3000:] if proc.stderr else ""
            raise AssertionError(f"the run ended before {folder}/{pattern} appeared\n{output}")
        assert time.monotonic() < deadline, f"no {folder}/{pattern} after {timeout:.0f} s"
        time.sleep(0.02)
    return found[0]
