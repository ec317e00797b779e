"""Batches of sequences sorted by length, under a budget of token slots (rows x the longest row).

Both the training rows of ``data.unpack`` (:mod:`probekit.train.rows`) and the packed probe rows
(:func:`probekit.probe.layers.collect_features`) run sorted sequences in batches padded to their longest
member; :func:`slot_budget_batches` is where they are cut.
"""

from __future__ import annotations

from collections.abc import Sequence


def slot_budget_batches(lengths: Sequence[int], budget: int) -> list[range]:
    """Consecutive index ranges of ``lengths`` (sorted ascending): a range grows while its size times the length
    of the member it would add stays within ``budget``; a member longer than the budget goes alone."""
    batches: list[range] = []
    start = 0
    while start < len(lengths):
        stop = start + 1
        while stop < len(lengths) and (stop + 1 - start) * lengths[stop] <= budget:
            stop += 1
        batches.append(range(start, stop))
        start = stop
    return batches
