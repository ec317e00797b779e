"""Fixed-width text tables for the summaries commands print on stderr (or stdout without ``--json``)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fixed_width(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The header and the rows of cells as left-aligned columns two spaces apart, one line each."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [header, *rows]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)
