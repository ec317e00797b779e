"""One row per problem: the ``data.unpack`` layout of a batch of whole-problem windows.

With ``data.packing: whole`` a window holds a few whole problems and ends in ``[PAD]``; the model reads it as one
sequence, so a problem attends to the problems before it in its window and every token pays for attention over
the whole window. Unpacked, the same problems run one per row: :func:`problem_rows` cuts the windows at their
``[PROBLEM]`` markers and drops the padding, and :func:`bucket_rows` sorts the rows by length and groups them
into micro-batches of at most a budget of token slots, each right-padded to its longest row. The data stream,
its resume position and the token counts of the log are those of the windows; what changes is that no problem
sees another, the attention span is a problem (about 210 tokens in iGSM-med op <= 4) instead of a window, and
the few targets that cross problems (the ``[PROBLEM]`` after an ``[EOS]``) are not trained.
"""

from __future__ import annotations

import torch

from probekit.batching import slot_budget_batches


def problem_rows(windows: torch.Tensor, problem_id: int, pad_id: int) -> list[torch.Tensor]:
    """The problems of ``windows`` (``(B, context)`` token ids, whole packing: each window starts with
    ``[PROBLEM]`` and ``[PAD]`` only follows its last problem), each a 1-D view without padding, in order.

    Raises ``ValueError`` for a window that does not start with ``[PROBLEM]`` (stream packing cuts problems).
    """
    rows: list[torch.Tensor] = []
    lengths = (windows != pad_id).sum(dim=1).tolist()
    for window, length in zip(windows, lengths):
        if not length:
            continue
        starts = torch.nonzero(window[:length] == problem_id).flatten().tolist()
        if not starts or starts[0] != 0:
            raise ValueError("a window does not start with [PROBLEM]: unpacking needs data.packing=whole")
        rows += [window[a:b] for a, b in zip(starts, starts[1:] + [length])]
    return rows


def bucket_rows(rows: list[torch.Tensor], budget: int, pad_id: int) -> list[torch.Tensor]:
    """Micro-batches of ``rows``, shortest first: each ``(n, longest)`` right-padded with ``pad_id``, with
    ``n * longest <= budget`` token slots (a row longer than the budget goes alone). Every row is in exactly
    one micro-batch; the grouping depends only on the lengths (ties keep their order)."""
    ordered = sorted(rows, key=len)
    batches = []
    for span in slot_budget_batches([len(row) for row in ordered], budget):
        group = ordered[span.start : span.stop]
        out = group[0].new_full((len(group), len(group[-1])), pad_id)
        for i, row in enumerate(group):
            out[i, : len(row)] = row
        batches.append(out)
    return batches
