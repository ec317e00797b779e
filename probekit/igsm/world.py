"""The world vocabulary: 4 categorizations, each a chain of 4 layers of categories.

A categorization (say Museum -> Gallery -> Display Case -> Artifact) is a containment chain: an item of
one layer holds items of the next layer down. Every category has 5 subcategories of about 20 items. The
vocabulary ships as ``data/world.json`` (the project's own names, none taken from the original authors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_WORLD = Path(__file__).resolve().parents[2] / "data" / "world.json"


@dataclass(frozen=True)
class Layer:
    """One category of a chain and its subcategories (name -> item names)."""

    category: str
    subcategories: dict[str, tuple[str, ...]]

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(item for group in self.subcategories.values() for item in group)


@dataclass(frozen=True)
class World:
    """The categorizations, each a list of 4 layers (top first), plus reverse look-ups by name."""

    name: str
    chains: tuple[tuple[Layer, ...], ...]
    item_home: dict[str, tuple[int, int]] = field(repr=False)  # item -> (chain, layer)
    item_rank: dict[str, int] = field(repr=False)  # item -> position in its layer's listing
    category_home: dict[str, tuple[int, int]] = field(repr=False)  # category -> (chain, layer)

    @classmethod
    def from_dict(cls, data: dict) -> World:
        chains, item_home, item_rank, category_home = [], {}, {}, {}
        for c, chain in enumerate(data["categorizations"]):
            layers = []
            for depth, layer in enumerate(chain["layers"]):
                subs = {name: tuple(items) for name, items in layer["subcategories"].items()}
                layers.append(Layer(layer["category"], subs))
                category_home[layer["category"]] = (c, depth)
                for rank, item in enumerate(layers[-1].items):
                    item_home[item] = (c, depth)
                    item_rank[item] = rank
            chains.append(tuple(layers))
        return cls(data.get("name", "world"), tuple(chains), item_home, item_rank, category_home)

    def words(self) -> set[str]:
        """Every whitespace-separated word used by a category or item name."""
        names = set(self.item_home) | set(self.category_home)
        return {word for name in names for word in name.split(" ")}


@lru_cache(maxsize=4)
def load_world(path: str | Path | None = None) -> World:
    """Load (and cache) the world vocabulary; the default is the project's ``data/world.json``."""
    path = Path(path) if path else DEFAULT_WORLD
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"world vocabulary not found: {path}") from None
    return World.from_dict(data)
