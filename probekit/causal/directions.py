"""Directions of fitted binary probes in the raw hidden space, and the edits that ablate or steer along them.

A fitted binary :class:`~probekit.probe.vprobe.VProbe` reads a standardised state: its logits are
``W (h - mu) / sigma + b``. The difference of its two logits is affine in the raw state ``h``::

    logit1 - logit0 = w . h + c,   w = (W1 - W0) / sigma,   c = (b1 - b0) - w . mu

so the probe looks along one direction ``u = w / |w|`` only (:func:`probe_direction`); ``|w|`` is how many
logit units one unit of ``h . u`` is worth.

Two interventions along a unit direction ``u`` (:func:`ablation`, :func:`steering`):

- **ablate**: replace the component of ``h`` along ``u`` by a constant ``m``: ``h' = h - (h . u - m) u``. With
  ``m`` the mean of ``h . u`` over the probe's training states it is *mean ablation* (the state keeps its
  typical size along ``u``); ``m = 0`` is *zero ablation* (projecting ``u`` out). Either way ``h' . u = m`` for
  every state, so the probe's logit difference on ablated states is the constant ``|w| m + c``: the probe can
  no longer tell any two states apart (its accuracy falls to that of a constant answer).
- **steer**: ``h' = h + a u``, with ``a = alpha * s``: ``alpha`` is the strength in units of ``s``, the
  standard deviation of ``h . u`` over the probe's training states. ``u`` points toward label 1 (``w . u > 0``),
  so a positive ``alpha`` pushes toward label 1 and moves the logit difference by exactly ``alpha * s * |w|``.

**Random directions** (:func:`random_directions`): ``n`` unit vectors uniform on the sphere (normalised
Gaussians, seeded), ablated by the same rule (their own mean projection over the same training states), or
steered by the same absolute amount ``alpha * s`` as the probe direction (equal norm of the displacement). An
effect of the probe direction says something only if it is larger than what random directions do.

Positions: an edit applies to every position of every forward it sees (``positions="all"``), or with
``positions="prompt"`` only to forwards of more than one token, which in KV-cached generation
(:class:`~probekit.evaluate.generation.ModelGenerator`) is the prompt's prefill: the one-token decoding steps
(the generated solution) are then left alone.

Everything here is plain torch on ``(..., d)`` tensors; :mod:`probekit.causal.interventions` runs the job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probekit.causal.choices import ABLATE_VALUES, MIN_RANDOM, MODES, POSITIONS
from probekit.causal.edits import Edit, on_prefill


@dataclass(frozen=True)
class ProbeDirection:
    """The direction a binary probe reads in the raw hidden space: ``logit1 - logit0 = weight . h + offset``."""

    weight: torch.Tensor
    """``w`` ``(d,)`` float64: the raw-space weight of the logit difference."""
    offset: float
    """``c``: the logit difference at ``h = 0``."""

    @property
    def norm(self) -> float:
        """``|w|``: logit-difference units per unit of ``h . u``."""
        return float(self.weight.norm())

    @property
    def unit(self) -> torch.Tensor:
        """``u = w / |w|`` ``(d,)`` float32, pointing toward label 1."""
        return (self.weight / self.weight.norm()).float()

    def logit_difference(self, states: torch.Tensor) -> torch.Tensor:
        """``w . h + c`` of states ``(..., d)`` (float64): equal to the probe's ``logit1 - logit0``."""
        return states.double() @ self.weight.to(states.device) + self.offset


def probe_direction(probe) -> ProbeDirection:
    """The raw-space direction of a fitted binary :class:`~probekit.probe.vprobe.VProbe` (module doc).

    Raises ``ValueError`` for a probe with more than two classes (``value``), whose logits read several
    directions, and for a probe whose weight is zero (it reads nothing).
    """
    probe._require_fit()
    params = probe.params_
    if params.head.out_features != 2:
        raise ValueError(
            f"the {probe.task!r} probe has {params.head.out_features} classes: an intervention needs a binary probe "
            "(one direction); use nece, dep, known, can_next or nece_next"
        )
    weight = params.head.weight.detach().double().cpu()
    bias = params.head.bias.detach().double().cpu()
    scale = params.scale.detach().double().cpu()
    mean = params.mean.detach().double().cpu()
    w = (weight[1] - weight[0]) / scale
    if not bool(torch.isfinite(w).all()) or float(w.norm()) == 0.0:
        raise ValueError("the probe's weight is zero or not finite: it reads no direction")
    return ProbeDirection(w, float(bias[1] - bias[0] - w @ mean))


def random_directions(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` float32 unit vectors uniform on the sphere (normalised standard Gaussians), a pure function
    of ``(n, d, seed)``; row ``i`` does not depend on ``n``. Raises ``ValueError`` when ``n < 1`` or ``d < 1``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of random directions must be an integer >= 1 (issue 17: at least 10), not {n!r}")
    if d < 1:
        raise ValueError(f"the hidden size must be >= 1, not {d}")
    gen = torch.Generator().manual_seed(int(seed))
    out = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return (out / out.norm(dim=1, keepdim=True)).float()


def projection_stats(states: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` ``(k,)`` float64 of the projections ``h . u`` of ``states`` ``(N, d)`` on each row of
    ``units`` ``(k, d)`` (population std; NaN when ``N = 0``)."""
    units = units.reshape(-1, units.shape[-1])
    proj = states.double() @ units.double().T.to(states.device)
    if not len(proj):
        nan = torch.full((units.shape[0],), math.nan, dtype=torch.float64)
        return nan, nan.clone()
    return proj.mean(0).cpu(), proj.std(0, unbiased=False).cpu()


def _check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, not {positions!r}")


def ablate(states: torch.Tensor, unit: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``h - (h . u - value) u`` for states ``(..., d)``: their component along the unit vector ``u`` becomes
    ``value`` (computed in float32 or wider, returned in the states' dtype)."""
    h = states.float() if states.dtype in (torch.float16, torch.bfloat16) else states
    u = unit.to(h.device, h.dtype)
    out = h - ((h @ u) - value).unsqueeze(-1) * u
    return out.to(states.dtype)


def steer(states: torch.Tensor, unit: torch.Tensor, amount: float) -> torch.Tensor:
    """``h + amount * u`` for states ``(..., d)`` (returned in the states' dtype)."""
    h = states.float() if states.dtype in (torch.float16, torch.bfloat16) else states
    return (h + amount * unit.to(h.device, h.dtype)).to(states.dtype)


def ablation(unit: torch.Tensor, value: float = 0.0, positions: str = "all") -> Edit:
    """An edit (:mod:`probekit.causal.edits`) applying :func:`ablate` at ``positions`` (:data:`POSITIONS`)."""
    _check_positions(positions)

    def edit(act: torch.Tensor) -> torch.Tensor:
        return ablate(act, unit, value)

    return on_prefill(edit) if positions == "prompt" else edit


def steering(unit: torch.Tensor, amount: float, positions: str = "all") -> Edit:
    """An edit (:mod:`probekit.causal.edits`) applying :func:`steer` at ``positions`` (:data:`POSITIONS`)."""
    _check_positions(positions)

    def edit(act: torch.Tensor) -> torch.Tensor:
        return steer(act, unit, amount)

    return on_prefill(edit) if positions == "prompt" else edit


@dataclass(frozen=True)
class Intervention:
    """One intervention along one direction: which direction, the unit vector, and the rule's constant."""

    direction: str
    """``"probe"`` or ``"random"``."""
    index: int
    """0 for the probe direction; the random direction's row in :func:`random_directions`."""
    unit: torch.Tensor
    """``(d,)`` float32 unit vector."""
    mode: str
    """One of :data:`MODES`."""
    value: float
    """ablate: the constant put along ``unit``; steer: the amount ``a`` added (``h + a u``)."""
    projection_mean: float
    """Mean of ``h . u`` over the training states."""
    projection_std: float
    """Standard deviation of ``h . u`` over the training states."""

    def edit(self, positions: str = "all") -> Edit:
        """The edit of this intervention at ``positions``."""
        if self.mode == "ablate":
            return ablation(self.unit, self.value, positions)
        return steering(self.unit, self.value, positions)

    def apply(self, states: torch.Tensor) -> torch.Tensor:
        """The intervention on states ``(..., d)`` directly (every position)."""
        return ablate(states, self.unit, self.value) if self.mode == "ablate" else steer(states, self.unit, self.value)


def interventions(
    direction: ProbeDirection,
    train_states: torch.Tensor,
    *,
    mode: str = "ablate",
    strength: float = 1.0,
    ablate_value: str = "mean",
    n_random: int = MIN_RANDOM,
    seed: int = 0,
) -> list[Intervention]:
    """The probe direction's intervention followed by ``n_random`` random directions' (module doc).

    ``train_states`` ``(N, d)``: the states the probe was trained on (the ablation constant and the steering
    unit ``s`` are measured there). ``mode``: :data:`MODES`; ``strength``: ``alpha`` of steering (units of the
    probe direction's projection std; negative: toward label 0); ``ablate_value``: :data:`ABLATE_VALUES`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if ablate_value not in ABLATE_VALUES:
        raise ValueError(f"ablate_value must be one of {', '.join(ABLATE_VALUES)}, not {ablate_value!r}")
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number, not {strength!r}")
    d = direction.weight.shape[0]
    if train_states.shape[-1] != d:
        raise ValueError(f"states of width {train_states.shape[-1]} for a direction of width {d}")
    units = torch.cat([direction.unit[None], random_directions(n_random, d, seed)])
    means, stds = projection_stats(train_states, units)
    amount = float(strength * stds[0])  # steering: the same displacement along every direction
    out = []
    for i, u in enumerate(units):
        if mode == "ablate":
            value = float(means[i]) if ablate_value == "mean" else 0.0
        else:
            value = amount
        out.append(
            Intervention(
                "probe" if i == 0 else "random",
                0 if i == 0 else i - 1,
                u,
                mode,
                value,
                float(means[i]),
                float(stds[i]),
            )
        )
    return out
