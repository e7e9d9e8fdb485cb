"""The Atari 100k benchmark's reference data: its 26 games, the random and human scores that
normalize a score, and the published per-game scores of data-efficient agents.

The numbers live in `dqn/data/atari100k.json`, each column with its source. A human-normalized
score is (score - random) / (human - random): 0 plays like a random agent, 1 like the human
reference (Mnih et al. 2015's protocol, as Dopamine's `labs/atari_100k` and rliable use it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

DATA = Path(__file__).resolve().parent / "data" / "atari100k.json"
# The published agents compared with ours, as the data file names them.
BASELINES = ("DER", "DrQ(eps)", "SPR", "BBF")


@dataclass(frozen=True)
class References:
    """Per-game scores keyed by ALE ROM name (`ms_pacman`), and where each column comes from."""

    games: dict[str, dict[str, float]]
    sources: dict[str, str]
    published_aggregates: dict[str, dict[str, float | str]]

    def score(self, game: str, column: str) -> float:
        """One game's score in one column (`random`, `human`, or a baseline)."""
        return self.games[game][column]


@cache
def references() -> References:
    """The shipped reference data."""
    data = json.loads(DATA.read_text())
    return References(data["games"], data["sources"], data["published_aggregates"])


GAMES: tuple[str, ...] = tuple(references().games)


def human_normalized(game: str, scores: npt.ArrayLike) -> np.ndarray:
    """`scores` of `game` as human-normalized scores: (score - random) / (human - random)."""
    refs = references()
    if game not in refs.games:
        raise KeyError(f"{game} is not one of the 26 Atari 100k games")
    random, human = refs.score(game, "random"), refs.score(game, "human")
    return (np.asarray(scores, dtype=np.float64) - random) / (human - random)
