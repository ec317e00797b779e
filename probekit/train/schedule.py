"""The learning-rate schedule: the LR of an optimizer step, a pure function of the step and ``schedule``.

Linear warm-up ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, then cosine (or linear) decay
reaching ``min_lr_ratio * lr`` at the last step (``schedule.steps - 1``); ``constant`` keeps the peak; ``wsd``
keeps the peak until the last ``decay_fraction`` of the steps after warm-up and decays linearly over those.
With ``rewarm_at`` (continuing a run that has already decayed) the LR climbs again from ``min_lr_ratio * lr``
to the schedule's value over ``warmup_steps`` steps from that step.
"""

from __future__ import annotations

import math

from probekit.train.config import ScheduleSection, required


def lr_at(step: int, peak: float, schedule: ScheduleSection) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    warmup = schedule.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    low = schedule.min_lr_ratio * peak
    rewarm = schedule.rewarm_at
    if rewarm is not None and rewarm <= step < rewarm + warmup:
        return min(low + (peak - low) * (step - rewarm + 1) / warmup, scheduled(step, peak, low, schedule))
    return scheduled(step, peak, low, schedule)


def scheduled(step: int, peak: float, low: float, schedule: ScheduleSection) -> float:
    """The LR of ``step`` after warm-up: the decay of ``schedule`` from ``peak`` to ``low``."""
    warmup, total = schedule.warmup_steps, required(schedule.steps, "schedule.steps")
    if schedule.decay == "constant":
        return peak
    if schedule.decay == "wsd":
        decay_steps = max(1, round(schedule.decay_fraction * (total - warmup)))
        progress = min(1.0, max(0, step - (total - decay_steps) + 1) / decay_steps)
        return peak - (peak - low) * progress
    progress = min(1.0, (step - warmup + 1) / max(1, total - warmup))
    if schedule.decay == "linear":
        return peak - (peak - low) * progress
    return low + (peak - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
