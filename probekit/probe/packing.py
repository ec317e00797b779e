"""Shared-prefix packing of probe inputs: one forward row per problem instead of one per example.

A problem's probe examples are its text cut at a few positions plus a short ``[START] A [END]`` suffix, so
they share long token prefixes (nece: ten examples with the same prompt; the step tasks: prefixes nested inside
the longest one). For a *frozen* model the hidden state at a token depends only on the tokens before it, so a
row can hold one **context** (an example's tokens) followed by the other examples' **tails** (what each adds
after its longest common prefix with the context), with

- a mask that lets a tail token see the context's first ``l`` tokens (its shared prefix) and the earlier
  tokens of its own tail, and nothing else, and
- position ids that continue each tail from ``l``,

so the last token of every tail (and of the context) has exactly the hidden state of its example run alone.
:func:`pack_rows` groups examples (lexicographic order puts a problem's examples side by side; an example joins
the group when it shares at least half of its tokens with the group's first example) and lays out the rows;
:func:`row_inputs` makes a batch's ids, positions and 4D mask, :func:`packed_batch` adds where each example is
read. The argument holds for a V-probe's embedding update too (``E + U V^T`` is another frozen embedding for
one forward), so ``collect_features`` (:mod:`probekit.probe.layers`) reads rank-0 probe features this way and
:class:`~probekit.probe.vprobe.VProbe` its features and, with ``batches="problems"``, its training forwards;
``tests/integration/test_probe.py`` checks both equal those of the unpacked examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and torch load when a function runs, so BATCHES reads light (``probekit probe --help``)
    import numpy as np
    import torch

MIN_SHARED = 0.5
"""An example joins a group when its common prefix with the group's first example is at least this share of
its tokens (two problems share a few words, a problem's own examples most of their tokens)."""
MAX_GROUP = 32
"""At most this many examples per row (bounds the row length)."""
BATCHES = ("examples", "problems")
"""How a V-probe's training batches are drawn (``VProbe(batches=...)``): random examples, or problem by problem
so that a batch's examples share their prompts and run packed."""


def check_batches(batches: str) -> None:
    """Raise ``ValueError`` unless ``batches`` is one of :data:`BATCHES`."""
    if batches not in BATCHES:
        raise ValueError(f"batches must be one of {', '.join(BATCHES)}, not {batches!r}")


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    import numpy as np

    m = min(len(a), len(b))
    differ = np.flatnonzero(a[:m] != b[:m])
    return int(differ[0]) if len(differ) else m


@dataclass
class Row:
    """One packed row: ``tokens`` (the context, then each tail), their ``positions``, for every token the
    ``shared`` context prefix it may see (the context's own tokens: their causal past) and the ``segment`` it
    belongs to (0: the context, k: the k-th tail), and ``reads``: ``(example index, token index in the row)``."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    shared: list[int] = field(default_factory=list)
    segment: list[int] = field(default_factory=list)
    reads: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)


def _row(seqs, members: list[int]) -> Row:
    """Lay out one group: the context is the member sharing the most tokens with the others."""
    import numpy as np

    arrays = [np.asarray(seqs[i]) for i in members]
    if len(members) > 1:
        shared = np.array([[common_prefix(a, b) for b in arrays] for a in arrays])
        context = int(np.argmax(shared.sum(axis=1) - shared.diagonal()))
    else:
        context = 0
    ctx = arrays[context]
    row = Row(
        tokens=ctx.tolist(),
        positions=list(range(len(ctx))),
        shared=list(range(len(ctx))),
        segment=[0] * len(ctx),
        reads=[(members[context], len(ctx) - 1)],
    )
    tails = [(i, a) for j, (i, a) in enumerate(zip(members, arrays)) if j != context]
    for k, (i, a) in enumerate(tails, start=1):
        keep = min(common_prefix(a, ctx), len(a) - 1)  # every tail has a token: the one that is read
        tail = a[keep:]
        row.tokens += tail.tolist()
        row.positions += range(keep, len(a))
        row.shared += [keep] * len(tail)
        row.segment += [k] * len(tail)
        row.reads.append((i, len(row.tokens) - 1))
    return row


def pack_rows(seqs) -> list[Row]:
    """Rows of shared-prefix packed examples (module doc); every example is read in exactly one row."""
    import numpy as np

    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    rows: list[Row] = []
    group: list[int] = []
    for i in order:
        if group and (
            len(group) >= MAX_GROUP
            or common_prefix(np.asarray(seqs[group[0]]), np.asarray(seqs[i])) < MIN_SHARED * len(seqs[i])
        ):
            rows.append(_row(seqs, group))
            group = []
        group.append(i)
    if group:
        rows.append(_row(seqs, group))
    return rows


def row_inputs(rows: list[Row], pad_id: int):
    """``(ids, positions, allowed)`` of a batch of rows, right-padded: int64 ``(B, L)``, int64 ``(B, L)`` and
    a boolean ``(B, 1, L, L)`` attention mask (True: the query token may attend to the key token). A padding
    token sees only itself."""
    import numpy as np
    import torch

    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    shared = np.zeros((len(rows), width), dtype=np.int64)
    segment = np.full((len(rows), width), -1, dtype=np.int64)
    for b, r in enumerate(rows):
        n = len(r)
        ids[b, :n], pos[b, :n], shared[b, :n], segment[b, :n] = r.tokens, r.positions, r.shared, r.segment
    index = np.arange(width)
    causal = index[None, :] <= index[:, None]  # (query, key)
    same = segment[:, :, None] == segment[:, None, :]
    in_context = (segment[:, None, :] == 0) & (index[None, None, :] < shared[:, :, None])
    allowed = (causal[None] & same & (segment[:, :, None] >= 0)) | in_context
    allowed |= np.eye(width, dtype=bool)[None]
    return torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(allowed[:, None])


@dataclass
class PackedBatch:
    """Model inputs of a batch of rows (:func:`row_inputs`) and where each example is read: the hidden state
    ``h[at_row[n], at_col[n]]`` belongs to example ``example[n]`` (an index into the sequences packed)."""

    ids: torch.Tensor
    positions: torch.Tensor
    allowed: torch.Tensor
    at_row: torch.Tensor
    at_col: torch.Tensor
    example: torch.Tensor


def packed_batch(rows: list[Row], pad_id: int, device=None) -> PackedBatch:
    """:func:`row_inputs` of ``rows`` and their reads, as tensors on ``device``."""
    import torch

    ids, positions, allowed = (t.to(device) for t in row_inputs(rows, pad_id))
    reads = [(b, i, j) for b, row in enumerate(rows) for i, j in row.reads]
    at_row, example, at_col = (torch.tensor([r[k] for r in reads], device=device) for k in range(3))
    return PackedBatch(ids, positions, allowed, at_row, at_col, example)


def problem_groups(seqs) -> list[list[int]]:
    """The examples that :func:`pack_rows` puts in one row (a problem's examples, at most :data:`MAX_GROUP`)."""
    return [[i for i, _ in row.reads] for row in pack_rows(seqs)]
