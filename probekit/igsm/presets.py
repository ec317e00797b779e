"""iGSM problem families ("presets") as immutable values, and the names that denote them.

The paper's two families are :data:`PRESETS` (``med``: op <= 15, ip <= 20; ``hard``: op <= 21, ip <= 28).
Training can restrict one (``data.max_op`` / ``data.max_edge``); the restriction is named after its values,
``med-op4`` (op <= 4), ``med-ip12`` (ip <= 12) or ``med-op4-ip12`` (both), so a name is all it takes to
recover the family: :func:`resolve_preset` turns any such name into its :class:`Preset` and
:func:`restricted_preset` builds one from a base and its bounds. Nothing is registered anywhere: the same
name gives the same value in every process (generator workers included) without set-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType


@dataclass(frozen=True)
class Preset:
    """A dataset family: the op bound and the instance-parameter (edge) bound."""

    name: str
    max_op: int
    max_edge: int

    @property
    def base(self) -> str:
        """The paper's family this one restricts (``med`` for ``med-op4-ip12``; its own name for a base)."""
        return self.name.split("-", 1)[0]


PRESETS: Mapping[str, Preset] = MappingProxyType({"med": Preset("med", 15, 20), "hard": Preset("hard", 21, 28)})
"""The paper's families by name (read-only)."""

MIN_MAX_EDGE = 12
"""The smallest instance-parameter bound the generator can draw under: its structure graphs need room for
(depth - 1) * width = 3 * 4 edges (:func:`~probekit.igsm.generate.draw_problem`)."""

FAMILY_HELP = (
    "problem family: med, hard, or a restriction of one such as med-op4-ip12 (op <= 4, at most 12 instance parameters)"
)
"""What a command's ``--preset`` takes (its help text, before the command's default)."""

_DERIVED = re.compile(r"(?P<base>[a-z]+)(?:-op(?P<max_op>[1-9][0-9]*))?(?:-ip(?P<max_edge>[1-9][0-9]*))?")


def preset_name(base: str, max_op: int | None = None, max_edge: int | None = None) -> str:
    """``base``, or ``base-opN`` / ``base-ipM`` / ``base-opN-ipM`` when ``max_op`` / ``max_edge`` restrict it."""
    name = base
    if max_op is not None:
        name += f"-op{max_op}"
    if max_edge is not None:
        name += f"-ip{max_edge}"
    return name


@cache
def resolve_preset(name: str) -> Preset:
    """The family ``name`` denotes: a base preset (``med``) or a restriction of one (``med-op4-ip12``).

    Raises ``ValueError`` for any other name (an unknown base, a bound below 1, a non-canonical spelling) and for
    an edge bound below :data:`MIN_MAX_EDGE`.
    """
    match = _DERIVED.fullmatch(name) if isinstance(name, str) else None
    base = PRESETS.get(match["base"]) if match else None
    if match is None or base is None:
        raise ValueError(
            f"preset must be one of {', '.join(PRESETS)} or a restriction such as med-op4-ip12, not {name!r}"
        )
    if name == base.name:
        return base
    max_op, max_edge = match["max_op"], match["max_edge"]
    if max_edge is not None and int(max_edge) < MIN_MAX_EDGE:
        raise ValueError(
            f"preset {name!r} bounds the instance parameters at {max_edge}; the generator needs at least "
            f"{MIN_MAX_EDGE} (room for its smallest structure graphs)"
        )
    return Preset(
        name,
        int(max_op) if max_op is not None else base.max_op,
        int(max_edge) if max_edge is not None else base.max_edge,
    )


def restricted_preset(base: str, max_op: int | None = None, max_edge: int | None = None) -> Preset:
    """Base preset ``base`` with its op / edge bounds replaced where given (``None``: the base's own);
    its name is :func:`preset_name` (``restricted_preset("med", 4, 12).name == "med-op4-ip12"``)."""
    if base not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {base!r}")
    return resolve_preset(preset_name(base, max_op, max_edge))
