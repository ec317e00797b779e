"""Load-time model checks: is the model that came back from disk the model that was trained?

A rotary buffer that comes back corrupted after loading, a tokenizer swapped for another one, two blocks'
weights swapped, a ``config.json`` with GPT-NeoX's default quarter rotary: each gives a model that loads
without a warning and probes to plausible-looking numbers. :func:`run_checks` catches them in seconds on CPU:

========================  ====  ===============================================================================
check                     fast  passes when
========================  ====  ===============================================================================
``tokenizer``             yes   prompt and solution of ``n_problems`` problems of the checkpoint's preset
                                round-trip exactly (``decode(encode(text)) == text``, and the training layout
                                decodes to its canonical text); the probe markers ``[START] [MID] [END]`` encode
                                as single tokens; the vocabulary fits the embedding and the LM head; the
                                tokenizer is the one recorded at save time (its fingerprint; required as
                                for ``weights``)
``config``                yes   rotary on every head dimension (fraction 1.0), sequential residual
                                (``use_parallel_residual=False`` for gpt2), default rotary type; the shape and
                                the context are what the training config's model yaml gives (when
                                ``probekit.json`` records one) and not shorter than the training window; at
                                least 95% of the preset's max-op problems fit in ``max_position_embeddings``
``weights``               yes   every tensor (parameters and buffers, non-persistent rotary ``inv_freq``
                                included) matches the ``fingerprint`` that ``save_checkpoint`` recorded
                                (:func:`probekit.checkpoint.weight_fingerprint`); without a recorded
                                fingerprint it fails under ``probekit inspect`` (unless
                                ``--allow-missing-fingerprint``) and is *skipped* elsewhere
``save_reload``           yes   every rotary ``inv_freq`` buffer equals the value implied by the config
                                (``rope_theta``, head dim, rotary fraction), and the logits equal those of the
                                same model with freshly computed rotary buffers and those of a
                                ``save_checkpoint`` / ``load_checkpoint`` round trip
``residual_stream``       no    at every block ``resid_post[i] == resid_pre[i] + attn_out[i] + mlp_out[i]`` (HF
                                forward hooks on the attention and MLP modules of a full forward;
                                ``resid_pre[0]`` the embeddings), with ``resid_post`` and ``resid_pre`` read
                                through the probes' hooks (:func:`probekit.probe.hooks.hidden_states`)
``bridge_logits``         no    the HF model and its TransformerLens bridge
                                (:func:`probekit.probe.hooks.make_bridge`) give the same logits
========================  ====  ===============================================================================

Model inputs are problems of the checkpoint's training preset encoded with probekit's default tokenizer (the
training stream's), so a broken checkpoint tokenizer fails the ``tokenizer`` check only. A check that cannot
run (an exception) fails with the error as its detail.

:func:`require_healthy` runs the fast checks and raises :class:`ModelCheckError` on a failure;
``probekit inspect CKPT`` (:func:`register`, :func:`inspect_command`) prints the report.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BRIDGE_TOLERANCE = 1e-4
"""Largest absolute logit difference between the HF model and its TransformerLens bridge (fp32; eager vs SDPA
attention)."""
RESIDUAL_TOLERANCE = 1e-5
"""Largest error of ``resid_pre + attn_out + mlp_out`` relative to the largest ``|resid_post|`` of a block."""
RELOAD_TOLERANCE = 1e-6
"""Largest absolute logit difference after a save/reload or a rotary recompute (identical in practice)."""
ROTARY_TOLERANCE = 1e-6
"""Largest relative error of a rotary ``inv_freq`` buffer against the value implied by the config."""
WEIGHTS_TOLERANCE = 1e-7
"""Largest relative error of a tensor checksum (``|sum|`` and the ramp sum are scaled by ``sqrt(numel) * ||x||``,
the sum of squares by itself); a swap of two random blocks changes them by about ``1/sqrt(numel)``."""
MIN_FIT_FRACTION = 0.95
"""Fraction of max-op problems that must fit in the context (as the training length check's default
``data.max_drop_fraction = 0.05``)."""
LENGTH_SAMPLES = 100
"""Problems drawn at the preset's max op to estimate the longest problem."""
PROBE_MARKERS = ("[START]", "[MID]", "[END]")


@dataclass
class CheckResult:
    """One check's outcome. ``passed`` is None when the check was skipped (``detail`` says why)."""

    name: str
    passed: bool | None
    measured: float | str | None
    threshold: float | str | None
    detail: str
    fast: bool

    @property
    def status(self) -> str:
        """``"pass"``, ``"FAIL"`` or ``"skipped"``."""
        return {True: "pass", False: "FAIL", None: "skipped"}[self.passed]

    def to_dict(self) -> dict:
        """The fields and ``status``, JSON-ready."""
        return {**asdict(self), "status": self.status}


class ModelCheckError(ValueError):
    """Raised by :func:`require_healthy`; ``.results`` holds every check's :class:`CheckResult`."""

    def __init__(self, checkpoint: str, results: list[CheckResult]):
        self.results = results
        failed = [r for r in results if r.passed is False]
        lines = [f"  {r.name}: measured {_fmt(r.measured)} (threshold {_fmt(r.threshold)}): {r.detail}" for r in failed]
        super().__init__(
            f"{checkpoint} fails {len(failed)} load-time model check(s):\n"
            + "\n".join(lines)
            + f"\nRun `probekit inspect {checkpoint}` for the full report; pass --skip-checks to override."
        )


@dataclass
class _Subject:
    """What the checks look at: a loaded model, its tokenizer (None when it does not load) and provenance."""

    model: Any
    tokenizer: Any
    provenance: dict
    tokenizer_error: str | None = None
    require_fingerprint: bool = False
    """Fail (rather than skip) the ``weights`` and ``tokenizer`` comparisons when no fingerprint is recorded."""


def run_checks(
    checkpoint,
    *,
    fast_only: bool = False,
    n_problems: int = 4,
    device: str = "cpu",
    require_fingerprint: bool = False,
) -> list[CheckResult]:
    """Run the load-time checks (see the module doc) on a checkpoint; returns one result per check.

    ``checkpoint`` is a checkpoint folder (loaded on ``device`` with :func:`probekit.checkpoint.load_checkpoint`)
    or an already loaded ``(model, tokenizer, provenance)`` triple (``device`` is then ignored).
    ``fast_only`` runs only ``tokenizer``, ``config``, ``weights`` and ``save_reload``. ``n_problems`` problems of
    the checkpoint's preset feed the tokenizer round trips and the logit comparisons. ``require_fingerprint``
    fails the ``weights`` and ``tokenizer`` checks of a checkpoint whose ``probekit.json`` records no fingerprint
    (``probekit inspect`` asks for it; otherwise they are compared only when recorded).
    """
    if n_problems < 1:
        raise ValueError(f"n_problems must be at least 1, not {n_problems}")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no loading / writing bars for the checks' own loads and saves
    try:
        subject = _open(checkpoint, device)
        subject.require_fingerprint = require_fingerprint
        records = _records(subject.provenance, n_problems)
        results = []
        for name, (check, fast) in CHECKS.items():
            if fast_only and not fast:
                continue
            try:
                passed, measured, threshold, detail = check(subject, records)
            except Exception as exc:  # a check that cannot run fails, with the reason
                passed, measured, threshold = False, None, None
                detail = f"the check could not run: {type(exc).__name__}: {exc}"
            results.append(CheckResult(name, passed, measured, threshold, detail, fast))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return results


def require_healthy(checkpoint, device: str = "cpu") -> list[CheckResult]:
    """Run the fast checks; return the results, or raise :class:`ModelCheckError` naming every failed check.

    ``checkpoint``: a folder or a loaded ``(model, tokenizer, provenance)`` triple, as for :func:`run_checks`.
    """
    results = run_checks(checkpoint, fast_only=True, device=device)
    if any(r.passed is False for r in results):
        raise ModelCheckError(_label(checkpoint), results)
    return results


# ---------------------------------------------------------------------------- subject and inputs
def _label(checkpoint) -> str:
    return "the loaded model" if isinstance(checkpoint, tuple) else str(checkpoint)


def _open(checkpoint, device: str) -> _Subject:
    from probekit.checkpoint import load_checkpoint

    if isinstance(checkpoint, tuple):
        model, tokenizer, provenance = checkpoint
        error = None if tokenizer is not None else "no tokenizer given"
        return _Subject(model, tokenizer, dict(provenance or {}), error)
    path = Path(checkpoint)
    try:
        return _Subject(*load_checkpoint(path, device=device, repair_rotary=False))
    except FileNotFoundError:
        raise
    except Exception as exc:
        error = f"load_checkpoint refuses the folder: {type(exc).__name__}: {exc}"
    # load the model alone (as load_checkpoint does), so that the other checks still run and the tokenizer
    # check reports the error; a model that does not load either raises here
    from probekit.checkpoint import load_model, read_provenance

    model = load_model(path, device=device, repair_rotary=False)
    return _Subject(model, None, read_provenance(path), error)


def _data_settings(provenance: dict) -> tuple[str, str, int | None]:
    """(preset name, format, training window) of the checkpoint's training data (med / pq / None if unknown)."""
    from probekit.checkpoint import training_family

    data = (provenance.get("training_config") or {}).get("data") or provenance.get("data") or {}
    return (*training_family(provenance), data.get("context"))


def _records(provenance: dict, n: int) -> list[dict]:
    from probekit.igsm.generate import GenerationConfig, generate_record

    name, fmt, _ = _data_settings(provenance)
    config = GenerationConfig(name, format=fmt, split="test", seed=0)
    return [generate_record(config, i) for i in range(n)]


def _inputs(subject: _Subject, records: list[dict]) -> list:
    """One ``(1, T)`` id tensor per record (default tokenizer, cut to the context), on the model's device."""
    import torch

    from probekit.tokenizer import default_tokenizer

    tok = default_tokenizer()
    context = int(subject.model.config.max_position_embeddings)
    device = next(subject.model.parameters()).device
    ids = tok.encode_examples([(r["problem"], r["solution"], r["answer"]) for r in records])
    return [torch.tensor([x[:context]], device=device) for x in ids]


def _logits(model, inputs: list) -> list:
    import torch

    with torch.no_grad():
        return [model(x, use_cache=False).logits.float() for x in inputs]


def _max_abs_diff(a: list, b: list) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# ---------------------------------------------------------------------------- rotary
def _rotary_buffers(model) -> dict[str, Any]:
    """``{name: tensor}`` of every rotary frequency buffer (``inv_freq`` and ``original_inv_freq``)."""
    names = ("inv_freq", "original_inv_freq")
    return {name: buf for name, buf in model.named_buffers() if name.rsplit(".", 1)[-1] in names}


def _set_buffer(model, name: str, value) -> None:
    module_name, _, attr = name.rpartition(".")
    model.get_submodule(module_name)._buffers[attr] = value


# ---------------------------------------------------------------------------- checks
def _check_tokenizer(s: _Subject, records: list[dict]):
    from probekit.tokenizer import UnknownWordError

    rows = s.model.get_input_embeddings().num_embeddings
    head = s.model.get_output_embeddings()
    head_rows = head.weight.shape[0] if head is not None else rows
    n_texts = 3 * len(records)
    threshold = f"{n_texts}/{n_texts} exact round trips, markers single tokens, vocab <= {min(rows, head_rows)}"
    if s.tokenizer is None:
        return False, None, threshold, s.tokenizer_error
    tok, issues, ok = s.tokenizer, [], 0
    for i, r in enumerate(records):
        layout = f"[PROBLEM] {r['problem']} [SOLUTION] {r['solution']} [ANSWER] {r['answer']} [EOS]"
        texts = (("prompt", r["problem"]), ("solution", r["solution"]), ("training layout", layout))
        for what, text in texts:
            try:
                back = tok.decode(tok.encode(text))
            except UnknownWordError as err:
                issues.append(f"problem {i} {what}: {err}")
                continue
            if back == text:
                ok += 1
            else:
                issues.append(f"problem {i} {what} decodes to a different text: {back[:80]!r}...")
    for marker in PROBE_MARKERS:
        marker_id = tok.token_to_id(marker)
        try:
            single = marker_id is not None and tok.encode(f"a {marker} b")[1:-1] == [marker_id]
        except UnknownWordError:
            single = False
        if not single:
            issues.append(f"the probe marker {marker} is not a single token")
    for what, n in (("embedding", rows), ("LM head", head_rows)):
        if tok.vocab_size > n:
            issues.append(f"{tok.vocab_size} tokens but the {what} has {n} rows")
    recorded = (s.provenance.get("fingerprint") or {}).get("tokenizer")
    if recorded is None and s.require_fingerprint:
        issues.append(f"no tokenizer fingerprint recorded in probekit.json: its ids cannot be verified{_ALLOW}")
    if recorded is not None and recorded != tok.fingerprint:
        issues.append(
            f"not the tokenizer recorded at save time (fingerprint {tok.fingerprint[:12]}, "
            f"recorded {recorded[:12]}): same words with other ids, or another vocabulary"
        )
    measured = f"{ok}/{n_texts} round trips, vocab {tok.vocab_size}"
    return (
        not issues,
        measured,
        threshold,
        "; ".join(issues)
        or (
            "round trips exact, markers single tokens, vocab fits"
            + (", tokenizer as recorded at save time" if recorded is not None else "")
        ),
    )


def _claimed_shape(provenance: dict):
    """``(ModelConfig, "")``: the shape the training config names (yaml + overrides), or ``(None, why not)``."""
    import dataclasses

    from probekit.train.config import ModelSection
    from probekit.train.model import model_config

    section = (provenance.get("training_config") or {}).get("model")
    if not isinstance(section, dict) or not section.get("name"):
        return None, "probekit.json records no training model config"
    if section.get("init_from"):
        return None, f"the shape came from init_from={section['init_from']}"
    allowed = {f.name for f in dataclasses.fields(ModelSection)}
    return model_config(ModelSection(**{k: v for k, v in section.items() if k in allowed})), ""


def _check_config(s: _Subject, records: list[dict]):
    from probekit.checkpoint import rotary_fraction
    from probekit.igsm.generate import GenerationConfig
    from probekit.igsm.presets import resolve_preset
    from probekit.modeling import hf_config
    from probekit.tokenizer import default_tokenizer
    from probekit.train.data import problem_tokens

    cfg = s.model.config
    arch = {"gpt_neox": "gpt2", "llama": "llama"}.get(cfg.model_type)
    fraction = rotary_fraction(cfg)
    parallel = getattr(cfg, "use_parallel_residual", False)
    context = int(cfg.max_position_embeddings)
    issues = []
    if arch is None:
        issues.append(f"model type {cfg.model_type!r} is neither gpt_neox (gpt2) nor llama")
    if fraction != 1.0:
        issues.append(
            f"rotary fraction {fraction:g} (partial_rotary_factor): probekit's {arch} rotates every "
            "head dimension (1.0)"
        )
    if parallel:
        issues.append("use_parallel_residual=True: probekit's gpt2 has a sequential residual")
    rope_type = (cfg.rope_parameters or {}).get("rope_type", "default")
    if rope_type != "default":
        issues.append(f"rope_type {rope_type!r}: probekit's models use the default rotary")
    claimed, why = _claimed_shape(s.provenance)
    if claimed is not None:
        expected = hf_config(claimed, default_tokenizer())
        for key in (
            "model_type",
            "num_hidden_layers",
            "num_attention_heads",
            "hidden_size",
            "intermediate_size",
            "max_position_embeddings",
            "hidden_act",
        ):
            want, got = getattr(expected, key), getattr(cfg, key, None)
            if want != got:
                issues.append(f"{key}={got!r} but {claimed.name} gives {want!r}")
        want_theta, got_theta = expected.rope_parameters["rope_theta"], cfg.rope_parameters.get("rope_theta")
        if want_theta != got_theta:
            issues.append(f"rope_theta={got_theta!r} but {claimed.name} gives {want_theta!r}")
    name, fmt, window = _data_settings(s.provenance)
    if window is not None and window > context:
        issues.append(f"max_position_embeddings={context} is shorter than the training window data.context={window}")
    max_op = resolve_preset(name).max_op
    config = GenerationConfig(name, op=max_op, format=fmt, split="train", seed=0)
    lengths = [len(problem_tokens(config, i)) for i in range(LENGTH_SAMPLES)]
    fit = sum(n <= context for n in lengths) / len(lengths)
    if fit < MIN_FIT_FRACTION:
        issues.append(
            f"only {fit:.0%} of {name} op-{max_op} problems fit in max_position_embeddings={context} "
            f"(longest {max(lengths)} tokens)"
        )
    measured = (
        f"rotary {fraction:g}, parallel_residual {parallel}, context {context}, longest {max(lengths)} ({fit:.0%} fit)"
    )
    shape = f"shape and context of {claimed.name}" if claimed is not None else "no shape claim"
    threshold = (
        f"rotary 1, parallel_residual False, {shape}, "
        f">= {MIN_FIT_FRACTION:.0%} of {LENGTH_SAMPLES} {name} op-{max_op} problems fit"
    )
    claim = f"matches {claimed.name}" if claimed is not None else f"shape not compared: {why}"
    detail = "; ".join(issues) or (
        f"{claim}; training window {window}; longest of {LENGTH_SAMPLES} "
        f"{name} op-{max_op} ({fmt}) problems: {max(lengths)} tokens"
    )
    return not issues, measured, threshold, detail


_ALLOW = " (probekit inspect --allow-missing-fingerprint skips this comparison)"


def _check_weights(s: _Subject, records: list[dict]):
    import math

    from probekit.checkpoint import weight_fingerprint

    recorded = (s.provenance.get("fingerprint") or {}).get("tensors")
    if not recorded:
        return (
            False if s.require_fingerprint else None,
            None,
            WEIGHTS_TOLERANCE,
            (
                "no fingerprint recorded in probekit.json (saved before "
                "save_checkpoint recorded one): the tensors cannot be verified"
                + (_ALLOW if s.require_fingerprint else "")
            ),
        )
    tensors = {**s.model.state_dict(), **dict(s.model.named_buffers())}
    current = weight_fingerprint(s.model)
    errors = {}
    for name in recorded.keys() & current.keys():
        (s0, q0, r0), (s1, q1, r1) = recorded[name], current[name]
        scale = math.sqrt(tensors[name].numel() * max(q0, q1)) or 1.0
        errors[name] = max(abs(s1 - s0) / scale, abs(r1 - r0) / scale, abs(q1 - q0) / (max(q0, q1) or 1.0))
    bad = sorted(name for name, e in errors.items() if e > WEIGHTS_TOLERANCE)
    missing, extra = sorted(recorded.keys() - current.keys()), sorted(current.keys() - recorded.keys())
    issues = []
    if bad:
        blocks = sorted({int(m.group(1)) for m in map(_BLOCK.search, bad) if m})
        where = f" (in blocks {', '.join(map(str, blocks))})" if blocks else ""
        issues.append(
            f"{len(bad)} of {len(recorded)} tensors differ from the save-time fingerprint{where}: {_some(bad)}"
        )
    if missing:
        issues.append(f"{len(missing)} recorded tensors are missing: {_some(missing)}")
    if extra:
        issues.append(f"{len(extra)} tensors were not recorded: {_some(extra)}")
    measured = max(errors.values(), default=math.inf)
    return not issues, measured, WEIGHTS_TOLERANCE, "; ".join(issues) or f"all {len(recorded)} tensors match"


_BLOCK = re.compile(r"\.(?:layers|h)\.(\d+)\.")


def _some(names: list[str], k: int = 4) -> str:
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def _check_save_reload(s: _Subject, records: list[dict]):
    from probekit.checkpoint import expected_inv_freq, load_checkpoint, save_checkpoint
    from probekit.tokenizer import default_tokenizer

    inputs = _inputs(s, records)
    expected = expected_inv_freq(s.model.config)
    buffers = _rotary_buffers(s.model)
    issues, rotary_error = [], 0.0
    if not buffers:
        issues.append("no rotary inv_freq buffer found")
    for name, buf in buffers.items():
        if buf.shape != expected.shape:
            issues.append(f"{name} has {buf.numel()} frequencies, the config implies {expected.numel()}")
            rotary_error = float("inf")
            continue
        err = ((buf.float().cpu() - expected).abs().max() / expected.abs().max()).item()
        rotary_error = max(rotary_error, err)
        if err > ROTARY_TOLERANCE:
            issues.append(f"{name} differs from the config-implied value by {err:.3g} (relative)")
    logits = _logits(s.model, inputs)
    try:  # the same weights with freshly computed rotary buffers
        for name, buf in buffers.items():
            _set_buffer(s.model, name, expected.to(device=buf.device, dtype=buf.dtype))
        fresh = _logits(s.model, inputs)
    finally:
        for name, buf in buffers.items():
            _set_buffer(s.model, name, buf)
    with tempfile.TemporaryDirectory(prefix="probekit-inspect-") as tmp:
        folder = save_checkpoint(s.model, s.tokenizer or default_tokenizer(), Path(tmp) / "ckpt", s.provenance)
        device = next(s.model.parameters()).device
        attention = getattr(s.model.config, "_attn_implementation", None) or "sdpa"  # as loaded: eager != sdpa
        reloaded, _, _ = load_checkpoint(
            folder, device=str(device), dtype=next(s.model.parameters()).dtype, attn_implementation=attention
        )
        again = _logits(reloaded, inputs)
    fresh_diff, reload_diff = _max_abs_diff(logits, fresh), _max_abs_diff(logits, again)
    if fresh_diff > RELOAD_TOLERANCE:
        issues.append(f"logits change by {fresh_diff:.3g} when the rotary buffers are recomputed from the config")
    if reload_diff > RELOAD_TOLERANCE:
        issues.append(f"logits change by {reload_diff:.3g} after save_checkpoint + load_checkpoint")
    measured = max(fresh_diff, reload_diff)
    detail = "; ".join(issues) or (
        f"rotary buffers as the config implies (relative error {rotary_error:.2g}); "
        f"logits identical after a rotary recompute and a save/reload"
    )
    return not issues, measured, RELOAD_TOLERANCE, detail


def _attn_mlp(layer):
    attn = next((getattr(layer, a) for a in ("attention", "self_attn") if hasattr(layer, a)), None)
    if attn is None or not hasattr(layer, "mlp"):
        raise TypeError(f"{type(layer).__name__}: cannot find its attention and MLP modules")
    return attn, layer.mlp


def _check_residual(s: _Subject, records: list[dict]):
    import torch

    from probekit.probe import hooks

    parts = hooks.model_parts(s.model)
    n = len(parts.layers)
    names = [hooks.EMBED] + [hooks.resid_name(i) for i in range(n)]
    worst, where = 0.0, None
    for x in _inputs(s, records):
        probe = hooks.hidden_states(s.model, x, names)
        outputs: dict[tuple[str, int], torch.Tensor] = {}
        handles = []
        try:
            for i, layer in enumerate(parts.layers):
                for kind, module in zip(("attn", "mlp"), _attn_mlp(layer)):
                    handles.append(
                        module.register_forward_hook(
                            lambda mod, args, out, key=(kind, i), store=outputs: store.__setitem__(
                                key, out[0] if isinstance(out, tuple) else out
                            )
                        )
                    )
            with torch.no_grad():
                s.model(x, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        for i in range(n):
            post = probe[names[i + 1]].float()
            summed = (probe[names[i]].float() + outputs["attn", i].float()) + outputs["mlp", i].float()
            err = ((post - summed).abs().max() / post.abs().max().clamp_min(1e-12)).item()
            if err >= worst:
                worst, where = err, i
    ok = worst <= RESIDUAL_TOLERANCE
    detail = (
        f"resid_post = resid_pre + attn_out + mlp_out at all {n} blocks through the probe hooks"
        if ok
        else f"blocks.{where}.hook_resid_post differs from resid_pre + attn_out + mlp_out (relative error "
        f"{worst:.3g}): the probes would not read the residual stream the blocks compute"
    )
    return ok, worst, RESIDUAL_TOLERANCE, detail


def _check_bridge(s: _Subject, records: list[dict]):
    import torch

    from probekit.probe import hooks
    from probekit.tokenizer import default_tokenizer

    inputs = _inputs(s, records)
    bridge = hooks.make_bridge(s.model, s.tokenizer or default_tokenizer())
    with torch.no_grad():
        tl = [bridge(x).float() for x in inputs]
    diff = _max_abs_diff(_logits(s.model, inputs), tl)
    ok = diff <= BRIDGE_TOLERANCE
    detail = (
        "HF and TransformerLens bridge logits agree"
        if ok
        else f"the TransformerLens bridge's logits differ from the HF model's by {diff:.3g}: the bridge back-end "
        "would probe a different model"
    )
    return ok, diff, BRIDGE_TOLERANCE, detail


CHECKS: dict[str, tuple[Callable, bool]] = {
    "tokenizer": (_check_tokenizer, True),
    "config": (_check_config, True),
    "weights": (_check_weights, True),
    "save_reload": (_check_save_reload, True),
    "residual_stream": (_check_residual, False),
    "bridge_logits": (_check_bridge, False),
}
"""Check name -> (function, in the fast subset), in the order they run."""


# ---------------------------------------------------------------------------- CLI
def register(subparsers) -> argparse.ArgumentParser:
    """Add ``probekit inspect CKPT [--fast] [--json] [--device]`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "inspect",
        help="load-time checks of a checkpoint (tokenizer, config, weights, rotary, hooks, bridge)",
        description="Check that a checkpoint loads as the model that was trained: tokenizer round trips and probe "
        "markers, rotary fraction / residual layout / context, weights against the save-time "
        "fingerprint, rotary buffers and save/reload logits, the residual stream through the probe "
        "hooks, and HF vs TransformerLens bridge logits. Exit status 0 when every check passes.",
    )
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--fast", action="store_true", help="only the fast checks (tokenizer, config, weights, save_reload)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--device", default="cpu", help="device to load the model on (default cpu)")
    p.add_argument(
        "--allow-missing-fingerprint",
        action="store_true",
        help="skip, instead of failing, the weight and tokenizer comparisons of a checkpoint whose probekit.json "
        "records no fingerprint (saved by another tool or before probekit recorded one)",
    )
    p.set_defaults(func=inspect_command)
    return p


def inspect_command(args) -> int:
    """``probekit inspect``: a table on stderr (and JSON on stdout with ``--json``); 0 if all checks pass, else 1."""
    results = run_checks(
        args.ckpt, fast_only=args.fast, device=args.device, require_fingerprint=not args.allow_missing_fingerprint
    )
    passed = all(r.passed is not False for r in results)
    print(format_table(results), file=sys.stderr)
    print(f"{args.ckpt}: {'all checks pass' if passed else 'FAILED'}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(args.ckpt), "passed": passed, "checks": [r.to_dict() for r in results]}))
    return 0 if passed else 1


def format_table(results: list[CheckResult]) -> str:
    """The results as a text table: check, status, measured, threshold, detail."""
    rows = [("check", "status", "measured", "threshold", "detail")]
    rows += [(r.name, r.status, _fmt(r.measured), _fmt(r.threshold), r.detail) for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
