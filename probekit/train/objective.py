"""The training objective: next-token cross-entropy over the targets a run learns from.

A window holds examples ``[PROBLEM] prompt [SOLUTION] solution [ANSWER] answer [EOS]`` (and, with
``data.packing: whole``, ``[PAD]`` after the last whole example). Which next-token targets count:

- ``all`` (the paper's objective): every target except ``[PAD]``;
- ``solution``: only the targets of a solution segment: the solution tokens, ``[ANSWER]``, the answer and the
  closing ``[EOS]`` (the predictions made from ``[SOLUTION]`` up to the token before ``[EOS]``). The problem
  text is still read (it is the context), but predicting its random names and numbers is not trained.

Whatever the objective, :class:`CausalLMLoss` also returns the summed loss and count of the solution targets,
so a run logs ``solution_loss`` (the loss that full-solution accuracy depends on) on one scale for every
objective. A target's segment is found from the last marker (``[PROBLEM]``, ``[SOLUTION]``, ``[EOS]``) at or
before its input position; before the first marker of a window (a window that starts inside an example, with
``data.packing: stream``) the segment is unknown and counts as problem text.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from probekit.tokenizer import IGSMTokenizer

Objective = Literal["all", "solution"]
OBJECTIVES = ("all", "solution")


class LossParts(NamedTuple):
    """One micro-batch: the mean loss over the trained targets, and the solution targets' sum and count."""

    loss: torch.Tensor
    solution_sum: torch.Tensor
    solution_count: torch.Tensor


def solution_targets(ids: torch.Tensor, solution_id: int, boundary_ids: tuple[int, ...]) -> torch.Tensor:
    """``(batch, context - 1)`` booleans: is the target ``ids[:, t + 1]`` part of a solution segment?

    True when the last marker at or before position ``t`` is ``[SOLUTION]`` (``boundary_ids``: the markers
    that end a segment, ``[PROBLEM]`` and ``[EOS]``).
    """
    markers = ids == solution_id
    for b in boundary_ids:
        markers |= ids == b
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last = torch.where(markers, positions, torch.full_like(positions, -1)).cummax(dim=1).values
    inside = (ids.gather(1, last.clamp(min=0)) == solution_id) & (last >= 0)
    return inside[:, :-1]


class CausalLMLoss(torch.nn.Module):
    """Next-token cross-entropy (fp32) of windows ``ids`` ``(batch, context)`` under ``objective``.

    ``forward(ids)`` returns :class:`LossParts`; ``loss`` is the mean over the trained targets (0 when a
    micro-batch has none), or their sum divided by ``denominator`` when given (the trained targets of all the
    micro-batches of a step, :meth:`trained_count`: a token mean over micro-batches of unequal size).
    """

    def __init__(self, model, tokenizer: IGSMTokenizer, objective: Objective = "all"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
        self.model = model
        self.objective = objective
        self.pad_id = tokenizer.pad_id
        self.solution_id = tokenizer.special("[SOLUTION]")
        self.boundary_ids = (tokenizer.special("[PROBLEM]"), tokenizer.eos_id)

    def _targets(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(trained, solution)``: boolean ``(batch, context - 1)`` masks of the targets ``ids[:, 1:]``."""
        solution = solution_targets(ids, self.solution_id, self.boundary_ids)
        return (solution if self.objective == "solution" else ids[:, 1:] != self.pad_id), solution

    def trained_count(self, ids: torch.Tensor) -> torch.Tensor:
        """The number of targets of ``ids`` that the objective trains on."""
        return self._targets(ids)[0].sum()

    def forward(self, ids: torch.Tensor, denominator: torch.Tensor | None = None) -> LossParts:
        logits = self.model(input_ids=ids, use_cache=False).logits
        targets = ids[:, 1:]
        per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
        per_token = per_token.view(targets.shape)
        trained, solution = self._targets(ids)
        total = trained.sum() if denominator is None else denominator
        loss = (per_token * trained).sum() / total.clamp(min=1)
        return LossParts(loss, (per_token * solution).sum().detach(), solution.sum())
