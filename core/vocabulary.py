"""Words the whole pipeline shares, each defined once.

Levels, the city's own code and the limits that partners, the worker and the simulator must
agree on are read from here by every layer, so a change cannot leave two copies disagreeing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Final

CITY_CODE: Final = "36.72"
"""Kemendagri code of Kota Cilegon: the scope code of the city-wide situation."""
CITY_NAME: Final = "Kota Cilegon"

LEVELS: Final[tuple[str, ...]] = ("NORMAL", "WATCH", "ALERT", "CRITICAL")
"""Situation levels from calm to worst; their index is the level's rank (and its metric value).

UNKNOWN (a level added by a newer writer) ranks -1, below NORMAL, so that it never raises a
rollup on its own and sorts after every known level on the board.
"""
_LEVEL_RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(LEVELS)}


def level_rank(level: str) -> int:
    """Rank of a level symbol; -1 for UNKNOWN or anything unrecognised."""
    return _LEVEL_RANK.get(level, -1)


def max_level(levels: Iterable[str]) -> str:
    """Worst of `levels`; NORMAL when there are none (no rule fired means calm)."""
    best = "NORMAL"
    best_rank = 0
    for level in levels:
        rank = _LEVEL_RANK.get(level, -1)
        if rank > best_rank:
            best, best_rank = level, rank
    return best


MAX_EVENT_AGE: Final = timedelta(days=7)
"""Oldest `occurred_at` the worker accepts; the input topics keep 7 days too, and the
simulator keeps its events younger than this."""

ASSET_REGISTRY_SEED: Final = 7
"""Seed of the SYNTHETIC asset registry that `cityops assets load` publishes by default; the
simulator must use the same one, or its lamp and container ids would not resolve."""
