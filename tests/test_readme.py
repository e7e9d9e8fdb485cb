"""README.md against the code: the config-group table names exactly the options in conf/, and
the results table's step budgets are what each preset runs."""

from __future__ import annotations

import re

import pytest

from conftest import (
    GROUPS,
    REPO,
    compose_config,
    config_defaults,
    group_options,
    hydra_group_options,
    launcher_options,
)

README = (REPO / "README.md").read_text()


def table(header: str) -> list[list[str]]:
    """The rows (cells stripped) of the README table whose header row is `header`."""
    lines = README.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def options_table() -> dict[str, list[str]]:
    """{group: the options it lists, in order} from the configuration table."""
    rows = table("| group | options | what it holds |")
    return {group.strip("`"): re.findall(r"`([^`]+)`", options) for group, options, _ in rows}


def steps(text: str) -> int:
    """The step count a budget starts with: "1.5M steps, 76-89 min" -> 1_500_000."""
    found = re.match(r"(\d+(?:\.\d+)?)([kM]) steps\b", text)
    assert found, f"a budget starts with its steps ('1.5M steps'): {text!r}"
    return round(float(found.group(1)) * {"k": 1_000, "M": 1_000_000}[found.group(2)])


def test_the_table_names_every_config_group():
    assert list(options_table()) == [*GROUPS, "hydra/launcher"]


@pytest.mark.parametrize("group", GROUPS)
def test_each_groups_options_are_the_files_in_conf(group):
    assert sorted(options_table()[group]) == group_options(group)


def test_the_marked_defaults_are_the_configs():
    """Each "(default)" in the table is conf/config.yaml's choice for that group."""
    rows = table("| group | options | what it holds |")
    marked = {
        group.strip("`"): name
        for group, options, _ in rows
        for name in re.findall(r"`([^`]+)` \(default\)", options)
    }
    defaults = config_defaults()
    assert marked == defaults


def test_the_launchers_exist():
    """joblib and submitit_local come with the `sweep` extra's plugins; slurm_* are files."""
    listed = options_table()["hydra/launcher"]
    assert sorted(listed) == launcher_options()
    assert set(listed) <= set(hydra_group_options("hydra/launcher"))


def test_the_results_table_names_each_presets_budget():
    rows = table("| game | preset | result | budget | record |")
    assert [row[0] for row in rows] == ["Pong", "Space Invaders", "CartPole"]
    for game, preset, _, budget, _ in rows:
        override = preset.strip("`")
        assert override.startswith("experiment="), game
        assert steps(budget) == compose_config([override]).total_steps, game
