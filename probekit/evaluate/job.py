"""``probekit eval`` as a library call: :class:`EvalSpec` (a checkpoint folder, the evaluation sets and how to
generate) and :func:`run_eval`, which draws the sets from the checkpoint's own problem family unless told
otherwise and runs :func:`~probekit.evaluate.run.evaluate_checkpoint` (one summary row per set).

Importing this module does not import torch (the model loads when a run starts).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from probekit.configs import SettingError, check_at_least, check_preset
from probekit.evaluate.run import EvalReport, evaluate_checkpoint
from probekit.evaluate.sets import DECODINGS, DEFAULT_N, TOKENS_PER_OP, EvalSet


@dataclass
class EvalSpec:
    """One ``probekit eval`` run: a checkpoint folder on evaluation sets (:func:`run_eval`)."""

    checkpoint: str
    """The checkpoint folder."""
    sets: str | None = None
    """Evaluation sets, a comma list of ``--sets`` tokens (:func:`~.sets.parse_sets`); None: the one set that
    ``op`` and ``reask`` give."""
    op: int | None = None
    """Force op = K (None: unforced, op <= the preset's max)."""
    reask: bool = False
    """Re-ask a new query of each op = K problem (needs ``op``)."""
    preset: str | None = None
    """Problem family: ``med``, ``hard`` or a restriction such as ``med-op4-ip12`` (None: the checkpoint's training
    family, else med)."""
    format: str | None = None
    """Problem / question order (None: the checkpoint's, else pq)."""
    n: int = DEFAULT_N
    """Problems per set."""
    seed: int = 0
    """Problem seed (problem i of a set is a function of seed and i); also seeds sampling."""
    samples: int = 0
    """Samples per problem for Pass@N / PassRatio@N (0: greedy only)."""
    temperature: float = 0.7
    """Sampling temperature (with ``samples``)."""
    decoding: str = "greedy"
    """How the judged solution is generated: ``greedy`` or ``beam-sample`` (beam 4 with sampling, the paper's
    second mode; :data:`~probekit.evaluate.sets.DECODINGS`)."""
    batch_size: int | None = None
    """Rows per generation batch (None: 256 on cuda, 32 on cpu)."""
    device: str | None = None
    """cpu | cuda (None: cuda when available)."""
    max_new_tokens: int | None = None
    """A fixed generation budget (None: ``tokens_per_op`` per op + 64, capped by the context)."""
    tokens_per_op: int = TOKENS_PER_OP
    workers: int = 1
    """Processes drawing the problems."""
    out: str | None = None
    """Folder for records.jsonl, summary.parquet, step_fit.json and eval.json (None: write nothing)."""
    checks: bool = True
    """Run the fast load-time model checks first (rows record ``checks_skipped``)."""
    progress: bool = True
    """Progress bars and logs on stderr."""

    def check(self) -> None:
        """Raise :class:`~probekit.checkpoint.NotACheckpointError` for a path that names no checkpoint folder and
        ``ValueError`` for settings out of range (also when ``device`` asks for CUDA and there is none)."""
        from probekit.checkpoint import checkpoint_folder, select_device

        checkpoint_folder(self.checkpoint)
        check_at_least(self, 0, "n", "samples")
        check_preset(self)
        if self.decoding not in DECODINGS:
            raise SettingError("decoding", f"must be one of {', '.join(DECODINGS)}, got {self.decoding!r}")
        if self.samples and self.temperature <= 0:
            raise SettingError("temperature", f"must be > 0 when sampling, got {self.temperature}")
        if self.op is not None and not 1 <= self.op <= 52:
            raise SettingError("op", f"must be between 1 and 52, got {self.op}")
        if self.reask and self.op is None and not self.sets:
            raise SettingError("reask", "needs op (the paper re-asks op=K problems)")
        check_at_least(self, 1, "batch_size", "max_new_tokens", "tokens_per_op", "workers")
        select_device(self.device)


def run_eval(spec: EvalSpec) -> EvalReport:
    """Evaluate ``spec.checkpoint`` on the sets of ``spec`` (drawn from the checkpoint's own problem family unless
    ``preset`` / ``format`` say otherwise) with :func:`evaluate_checkpoint`; one row per set."""
    from probekit.checkpoint import read_provenance, resolve_checkpoint, select_device, training_family
    from probekit.evaluate.sets import parse_sets

    spec.check()
    checkpoint = resolve_checkpoint(spec.checkpoint)  # rows name the folder a `latest` pointer stands for
    device = select_device(spec.device)
    family, family_format = training_family(read_provenance(checkpoint))
    preset = spec.preset or family
    fmt = spec.format or family_format
    if spec.sets:
        sets = parse_sets(spec.sets, preset, spec.n, spec.seed, fmt)
    else:
        sets = [EvalSet(preset, spec.op, spec.reask, fmt, spec.seed, spec.n)]
    batch_size = spec.batch_size or (256 if device == "cuda" else 32)
    if spec.progress:
        names = ", ".join(s.name for s in sets)
        print(
            f"probekit eval: {checkpoint} on {preset}_{fmt} [{names}], n={spec.n}, seed={spec.seed}, "
            f"device={device}, batch {batch_size}, {spec.decoding}"
            + (f", {spec.samples} samples at T={spec.temperature}" if spec.samples else ""),
            file=sys.stderr,
        )
    return evaluate_checkpoint(
        checkpoint,
        sets,
        out=spec.out,
        batch_size=batch_size,
        device=device,
        samples=spec.samples,
        temperature=spec.temperature,
        workers=spec.workers,
        tokens_per_op=spec.tokens_per_op,
        max_new_tokens=spec.max_new_tokens,
        progress=spec.progress,
        checks=spec.checks,
        decoding=spec.decoding,
    )
