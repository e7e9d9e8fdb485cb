"""`python scripts/train.py --help` (conf/hydra/help/train.yaml): the project's own help, whose
hand-written list of config groups must match conf/."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import (
    GROUPS,
    REPO,
    TRAIN,
    config_defaults,
    group_options,
    hydra_group_options,
    launcher_options,
)


@pytest.fixture(scope="module")
def help_text() -> str:
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def listed_groups(text: str) -> dict[str, list[str]]:
    """The help's "Config groups" block as {group: options}; a group's options may continue on
    indented lines, and parenthesised remarks are not options."""
    block = text.split("Config groups", 1)[1].split("\n\n", 1)[0]
    groups: dict[str, str] = {}
    group = ""
    for line in block.splitlines()[1:]:
        start = re.match(r"^  (\S+)\s{2,}(.*)$", line)
        if start:
            group = start.group(1)
            groups[group] = start.group(2)
        else:
            groups[group] += " " + line.strip()
    return {
        group: [name.strip() for name in re.sub(r"\([^)]*\)", "", names).split(",")]
        for group, names in groups.items()
    }


def test_help_is_the_projects_own(help_text):
    assert help_text.startswith("atari-dqn: train a DQN agent")
    assert "powered by Hydra" not in help_text
    assert "_schema" not in help_text
    for group in (*GROUPS, "hydra/launcher"):
        assert f"\n  {group} " in help_text, group
    assert "outputs/<env>/<agent>/" in help_text and "outputs/multirun/" in help_text
    assert "resume=<run dir>" in help_text


def test_help_lists_exactly_the_options_in_conf(help_text):
    listed = listed_groups(help_text)
    assert list(listed) == [*GROUPS, "hydra/launcher"]
    for group in GROUPS:
        assert sorted(listed[group]) == group_options(group), group
    assert sorted(listed["hydra/launcher"]) == launcher_options()
    assert set(launcher_options()) <= set(hydra_group_options("hydra/launcher"))  # installed


def test_each_default_is_named_first(help_text):
    """A group with a default (in conf/config.yaml) lists it first."""
    listed = listed_groups(help_text)
    defaults = config_defaults()
    assert set(defaults) == {"env", "network", "agent", "hw"}
    for group, default in defaults.items():
        assert listed[group][0] == default, group
