"""Activation patching over minimal pairs (issue 17): where does the model carry what changed?

A minimal pair (:mod:`probekit.igsm.pairs`) is a *clean* problem and a *counterfactual* twin that differs in
one statement's constant (``value``), one reference (``dependency``) or the question (``query``). Both members
are run on the same *teacher-forced input*; the activation at one hook point (TransformerLens 4 names,
:mod:`probekit.causal.edits`: ``embed.hook_out``, ``blocks.{i}.hook_resid_post | hook_attn_out |
hook_mlp_out``, ``ln_final.hook_out``) is copied, at a set of positions, from one run (the *source*) into the
other (the *base*), and the effect on the model's next token is measured.

**Directions.** ``denoise`` (default): the base is the counterfactual run and the source the clean run, so a
patch that carries the changed information restores the clean behaviour. ``noise``: the base is the clean run
and the source the counterfactual run (a patch that carries the information breaks the clean behaviour).

**Input.** ``[EOS] [PROBLEM] problem [SOLUTION]`` (:meth:`~probekit.tokenizer.IGSMTokenizer.prompt_ids`)
followed by the part of the reference solution the clean and counterfactual solutions share, up to (not
including) their first differing token; when the two solutions (and answers) are identical, up to the answer
token. Position-wise patching needs both inputs to have the same number of tokens: other pairs are *skipped*
and get a row with a ``reason`` (``unequal_length``; also ``pair_error`` for the error lines of ``probekit
pairs``, ``too_long`` for inputs beyond the model's context and ``invalid`` for members the tokenizer cannot
encode), never dropped silently.

**Metric.** The logit difference at the last input position ``LD = logit[clean token] - logit[counterfactual
token]`` (the two first differing tokens). ``ld_clean`` and ``ld_corrupt`` are the unpatched clean and
counterfactual runs, ``ld_patched`` the patched base run, and ``restored = (ld_patched - ld_corrupt) /
(ld_clean - ld_corrupt)`` in both directions (denoise: 1 = the clean behaviour is fully restored, 0 = no effect;
noise: 1 = no effect, 0 = fully corrupted). ``effect = (ld_patched - ld_base) / (ld_source - ld_base)`` is the
share of the source's behaviour the patch carries (``restored`` for denoise, ``1 - restored`` for noise).
Both are NaN (``None`` in JSON) with ``undefined = true`` when ``|ld_clean - ld_corrupt| <`` :data:`MIN_GAP`
(the model does not tell the two tokens apart differently in the two runs; e.g. identical solutions).

**Positions.** By role (:mod:`probekit.causal.roles`): ``changed`` (the statement or question holding the
diff span), ``other_statements``, ``question``, ``solution`` (the solution prefix with the separators) and
``all``; every position of the role is patched at once. With ``positions=True`` each single position from
the first one whose token differs between the two inputs is patched instead (one row per position, with its
role; earlier positions have the same activations in both runs, so patching them changes nothing; the
``roles`` setting is then ignored).

**Greedy decoding under the patch** (``generate=True``, role mode only): the base *prompt* (up to
``[SOLUTION]``, no solution prefix) is prefilled with the patch at the role's prompt positions (the
``solution`` role then holds only the separators), and greedy decoding continues from the KV cache without
edits. So a patch at block ``l`` changes the prompt's keys and values of the blocks above ``l`` only: the
generated tokens still attend to the base run's keys and values of blocks ``0..l`` at those positions, and
can read the base information there (even patching ``all`` prompt positions need not restore the answer), and
a patch at ``ln_final.hook_out`` changes only the first generated token's logits. The completion is judged
(:func:`probekit.evaluate.judge.judge`, the full-solution checker): ``answer_patched``,
``clean_answer_restored`` (the emitted answer is the clean answer), ``counterfactual_answer`` (it is the
counterfactual answer), ``correct_clean`` (the solution is correct for the clean problem),
``correct_counterfactual``. The unpatched runs' answers and verdicts come on every row of
the pair (``clean_run_answer``, ``clean_run_correct``, ``counterfactual_run_answer``,
``counterfactual_run_correct``).

**Batching.** Per pair, one forward of both runs captures every point; the patched runs of all (point, role)
or (point, position) combinations are rows of batches of ``batch_size`` (the same input, one mask per row;
only the last position's logits are computed). Runs in the model's dtype on any device (no autocast, so CPU
results are exact: a self-patch is bit-identical and patching all positions at ``embed.hook_out`` reproduces
the source run).

:func:`run_patch` runs a :class:`PatchSpec`; :func:`prepare_pair`, :func:`patch_pair` and :func:`patch_pairs`
work on a loaded model (notebooks); :func:`summarize` aggregates rows per (pair kind, point, role) with 95%
bootstrap intervals over pairs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from probekit.causal.roles import ALL, PROBLEM_OFFSET, ROLE_CHOICES, input_roles, role_mask
from probekit.probe.readout import EMBED, FINAL

if TYPE_CHECKING:
    import torch

DIRECTIONS = ("denoise", "noise")
COMPONENT_CHOICES = ("resid_post", "attn_out", "mlp_out")
"""The per-block hook points (``blocks.{i}.hook_<component>``) that :mod:`probekit.causal.edits` can patch."""
MIN_GAP = 1e-4
"""``|ld_clean - ld_corrupt|`` below which ``restored`` is undefined (NaN, ``undefined = true``)."""
PAIR_KINDS = ("value", "dependency", "query")
DEFAULT_GENERATED = 40
"""Pairs made from generated problems (``PatchSpec.op``) when ``n`` is not given."""


class SkipPair(ValueError):
    """A pair that cannot be patched; ``reason`` is a short code (``unequal_length``, ``pair_error``,
    ``too_long``; :func:`patch_pairs` adds ``invalid``), the message says more."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class PatchSpec:
    """What :func:`run_patch` does.

    ``checkpoint``: the model folder. Pairs come from ``pairs`` (a ``probekit pairs`` JSONL file), ``records``
    (pair dicts in memory), ``problems`` (a JSONL of generate-style records; pairs of ``pair_kind`` made on the
    fly with :func:`probekit.igsm.pairs.make_pairs`, seeded by ``seed``) or ``op``: test-split problems with
    ``op`` operations of ``preset`` (None: the checkpoint's training family) / ``format`` generated with ``seed`` (indices 0, 1, ... until ``n`` pairs,
    default :data:`DEFAULT_GENERATED`), paired the same way (what a sweep job runs). ``pair_kind``: ``value``,
    ``dependency``, ``query`` or ``all`` (filters the pairs read). ``components``: which of
    :data:`COMPONENT_CHOICES` to patch (``resid_post`` = ``embed.hook_out``, every block's resid_post and
    ``ln_final.hook_out``; the others every block's). ``roles``: the position roles patched. ``direction``:
    ``denoise`` or ``noise`` (module doc). ``generate``: greedy decoding under each role patch. ``positions``:
    patch single positions instead of roles (no decoding). ``n``: at most this many pair lines. ``batch_size``:
    patched runs per forward. ``max_new_tokens``: decoding budget (default: twice the longer reference
    continuation plus 16, within the context).
    """

    checkpoint: str
    pairs: str | None = None
    records: tuple[dict, ...] | None = None
    problems: str | None = None
    op: int | None = None
    preset: str | None = None
    format: str = "pq"
    pair_kind: str = "all"
    components: tuple[str, ...] = ("resid_post",)
    roles: tuple[str, ...] = ROLE_CHOICES
    direction: str = "denoise"
    generate: bool = True
    positions: bool = False
    n: int | None = None
    batch_size: int = 64
    device: str | None = None
    seed: int = 0
    max_new_tokens: int | None = None
    progress: bool = False

    def __post_init__(self):
        sources = [x is not None for x in (self.pairs, self.records, self.problems, self.op)]
        if sum(sources) != 1:
            raise ValueError("give exactly one of pairs (a pairs JSONL), records, problems or op (generated problems)")
        if self.op is not None and not 1 <= self.op <= 52:
            raise ValueError(f"op must be between 1 and 52, not {self.op}")
        if self.pair_kind not in (*PAIR_KINDS, "all"):
            raise ValueError(f"pair kind must be one of {', '.join(PAIR_KINDS)} or all, not {self.pair_kind!r}")
        bad = [c for c in self.components if c not in COMPONENT_CHOICES]
        if bad or not self.components:
            raise ValueError(f"components must be among {', '.join(COMPONENT_CHOICES)}, not {list(self.components)}")
        bad = [r for r in self.roles if r not in ROLE_CHOICES]
        if bad or not self.roles:
            raise ValueError(f"roles must be among {', '.join(ROLE_CHOICES)}, not {list(self.roles)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be denoise or noise, not {self.direction!r}")
        if self.n is not None and self.n < 1:
            raise ValueError("n must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


# ---------------------------------------------------------------------------- points
def patch_points(n_layer: int, components: Iterable[str] = ("resid_post",)) -> list[str]:
    """The hook names patched for ``components``: ``resid_post`` gives ``embed.hook_out``, every block's
    ``hook_resid_post`` and ``ln_final.hook_out``; ``attn_out`` / ``mlp_out`` every block's output."""
    out: list[str] = []
    for c in components:
        if c not in COMPONENT_CHOICES:
            raise ValueError(f"component must be one of {', '.join(COMPONENT_CHOICES)}, not {c!r}")
        if c == "resid_post":
            out += [EMBED, *(f"blocks.{i}.hook_resid_post" for i in range(n_layer)), FINAL]
        else:
            out += [f"blocks.{i}.hook_{c}" for i in range(n_layer)]
    return out


def point_info(name: str, n_layer: int) -> dict:
    """``{"layer", "component", "depth"}`` of a hook name: ``layer`` the block index (``"embed"`` /
    ``"ln_final"`` for the two ends), ``component`` (``resid_post`` for both ends too), ``depth`` a number
    that orders points (-1 for the embeddings, ``i`` for block ``i``, ``n_layer`` for ``ln_final``)."""
    if name == EMBED:
        return {"layer": "embed", "component": "resid_post", "depth": -1}
    if name == FINAL:
        return {"layer": "ln_final", "component": "resid_post", "depth": n_layer}
    _, index, hook = name.split(".")
    return {"layer": int(index), "component": hook.removeprefix("hook_"), "depth": int(index)}


# ---------------------------------------------------------------------------- pairs
@dataclass
class PairInput:
    """One pair ready to patch (:func:`prepare_pair`).

    ``clean_ids`` / ``counterfactual_ids``: the teacher-forced inputs (same length); ``prompt_length``: the
    tokens up to ``[SOLUTION]`` (the decoding prompt is ``ids[:prompt_length]``); ``clean_token`` /
    ``counterfactual_token``: the first tokens where the reference continuations differ (equal when they do
    not); ``roles``: the role of every input position; ``first_diff``: the first position whose tokens differ
    between the inputs; ``budget``: the default decoding budget; ``info``: row fields (``target_step``, the
    index of the read token in the reference continuation; ``n_tokens``; ``prompt_tokens``; ``same_target``,
    the two reference continuations are identical so the LD is 0 in every run and ``restored`` undefined).
    """

    index: int
    pair_kind: str
    clean_ids: list[int]
    counterfactual_ids: list[int]
    prompt_length: int
    clean_token: int
    counterfactual_token: int
    roles: list[str]
    first_diff: int
    budget: int
    clean: dict
    counterfactual: dict
    info: dict = field(default_factory=dict)


def pair_meta(pair: dict, index: int) -> dict:
    """The row fields that identify a pair line: ``pair`` (its index), ``pair_kind``, ``problem_index`` and
    ``problem_seed`` (the clean record's ``index`` / ``seed`` when present), ``same_length``."""
    member = pair.get("clean")
    clean: dict = member if isinstance(member, dict) else {}
    return {
        "pair": index,
        "pair_kind": pair.get("kind"),
        "problem_index": clean.get("index"),
        "problem_seed": clean.get("seed"),
        "same_length": pair.get("same_length"),
    }


def check_pair_record(pair) -> None:
    """Raise ``ValueError`` unless ``pair`` looks like a ``probekit pairs`` line (a pair or an error line)."""
    if not isinstance(pair, dict):
        raise ValueError(f"expected a JSON object, got {type(pair).__name__}")
    if "error" in pair and "clean" not in pair:
        return
    for member in ("clean", "counterfactual"):
        value = pair.get(member)
        if not isinstance(value, dict):
            raise ValueError(
                f"not a pair record (no {member!r} object; make pairs with `probekit pairs` or pass --problems)"
            )
        for key in ("problem", "solution"):
            if not isinstance(value.get(key), str):
                raise ValueError(f"not a pair record: {member}.{key} must be a string")
        if "answer" not in value:
            raise ValueError(f"not a pair record: {member} has no 'answer'")


def _continuation(tokenizer, record: dict) -> tuple[list[int], list[int]]:
    """``(prompt_ids, continuation)``: the decoding prompt of a member and its reference continuation
    (``solution [ANSWER] answer [EOS]``)."""
    prompt = tokenizer.prompt_ids(record["problem"])
    example = tokenizer.encode_example(record["problem"], record["solution"], record["answer"])
    return prompt, example[len(prompt) - 1 :]  # encode_example has no leading [EOS]


def prepare_pair(pair: dict, tokenizer, index: int = 0, context: int | None = None) -> PairInput:
    """The patching input of a pair record (module doc); raises :class:`SkipPair` when it cannot be patched."""
    from probekit.igsm.pairs import diff_spans, tokens

    if "error" in pair and "clean" not in pair:
        raise SkipPair("pair_error", str(pair["error"]))
    check_pair_record(pair)
    clean, cf = pair["clean"], pair["counterfactual"]
    p_clean, c_clean = _continuation(tokenizer, clean)
    p_cf, c_cf = _continuation(tokenizer, cf)
    if len(p_clean) != len(p_cf):
        raise SkipPair(
            "unequal_length", f"the problem texts have {len(p_clean) - 3} and {len(p_cf) - 3} tokens (need equal)"
        )
    k = 0
    while k < min(len(c_clean), len(c_cf)) and c_clean[k] == c_cf[k]:
        k += 1
    if k == min(len(c_clean), len(c_cf)):  # identical continuations: read at the answer token
        k = c_clean.index(tokenizer.special("[ANSWER]")) + 1
    ids_clean, ids_cf = p_clean + c_clean[:k], p_cf + c_cf[:k]
    if context is not None and len(ids_clean) >= context:
        raise SkipPair("too_long", f"the input has {len(ids_clean)} tokens, the context {context}")
    pieces = tokens(clean["problem"])
    if len(pieces) + PROBLEM_OFFSET + 1 != len(p_clean):
        raise ValueError("the problem's token pieces do not match its encoding")
    spans = pair.get("diff_spans") or {}
    try:
        span = spans["clean"][0]
    except (KeyError, IndexError, TypeError):
        span = diff_spans(clean["problem"], cf["problem"])[0]
    differ = [i for i, (a, b) in enumerate(zip(ids_clean, ids_cf)) if a != b]
    longest = max(len(c_clean), len(c_cf))
    return PairInput(
        index=index,
        pair_kind=str(pair.get("kind")),
        clean_ids=ids_clean,
        counterfactual_ids=ids_cf,
        prompt_length=len(p_clean),
        clean_token=c_clean[k],
        counterfactual_token=c_cf[k],
        roles=input_roles(pieces, span, len(ids_clean)),
        first_diff=differ[0] if differ else len(ids_clean),
        budget=2 * longest + 16,
        clean=clean,
        counterfactual=cf,
        info={
            "target_step": k,
            "n_tokens": len(ids_clean),
            "prompt_tokens": len(p_clean),
            "same_target": c_clean[k] == c_cf[k],
        },
    )


def read_pairs(path: str | Path, pair_kind: str = "all", n: int | None = None) -> list[tuple[int, dict]]:
    """``(index, pair)`` for the lines of a ``probekit pairs`` JSONL of ``pair_kind`` (``all``: every line), at
    most ``n``; ``index`` is the 0-based line index. Raises ``ValueError`` naming the line on a line that is not
    JSON or not a pair record (error lines of ``probekit pairs`` are kept: they become skipped rows)."""
    from probekit.records import read_jsonl

    out: list[tuple[int, dict]] = []
    for i, line in enumerate(read_jsonl(path)):
        if line.record is None:
            raise ValueError(f"{path} line {line.number}: {line.error}")
        try:
            check_pair_record(line.record)
        except ValueError as err:
            raise ValueError(f"{path} line {line.number}: {err}") from None
        if pair_kind != "all" and line.record.get("kind") != pair_kind:
            continue
        out.append((i, line.record))
        if n is not None and len(out) >= n:
            break
    if not out:
        raise ValueError(f"{path}: no pair records" + ("" if pair_kind == "all" else f" of kind {pair_kind}"))
    return out


def pairs_from_problems(
    path: str | Path, pair_kind: str = "value", seed: int = 0, n: int | None = None
) -> list[tuple[int, dict]]:
    """Pairs made on the fly (:func:`probekit.igsm.pairs.make_pairs`) from a JSONL of generate-style records, as
    ``(index, pair)`` (``index`` counts the pair lines made), at most ``n``."""
    from probekit.records import read_jsonl

    def records():
        for line in read_jsonl(path):
            if line.record is None:
                raise ValueError(f"{path} line {line.number}: {line.error}")
            if "problem" not in line.record:
                raise ValueError(f"{path} line {line.number}: not a problem record (no 'problem')")
            yield line.record

    out = pairs_from_records(records(), pair_kind, seed, n)
    if not out:
        raise ValueError(f"{path}: no problem records")
    return out


def pairs_from_records(
    records: Iterable[dict], pair_kind: str = "value", seed: int = 0, n: int | None = None
) -> list[tuple[int, dict]]:
    """Pairs of ``pair_kind`` made from generate-style ``records`` (``(index, pair)``, ``index`` counting the
    pair lines made), at most ``n``: the records are read only until ``n`` pairs are made."""
    from probekit.igsm.pairs import PairSpec, make_pairs

    spec = PairSpec(pair_kind, seed)
    out: list[tuple[int, dict]] = []
    for number, record in enumerate(records):
        for pair in make_pairs(spec, record, number):
            out.append((len(out), pair))
            if n is not None and len(out) >= n:
                return out
    return out


def generated_pairs(spec: PatchSpec) -> list[tuple[int, dict]]:
    """The pairs of a spec with ``op``: test-split problems of ``op`` operations, made until ``n`` pairs (preset:
    ``spec.preset``, else the checkpoint's training family)."""
    import itertools

    from probekit.checkpoint import read_provenance, training_family
    from probekit.igsm.generate import GenerationConfig, generate_record

    preset = spec.preset or training_family(read_provenance(spec.checkpoint))[0]
    config = GenerationConfig(preset, spec.op, spec.format, False, "test", spec.seed)
    problems = (generate_record(config, i) for i in itertools.count())
    return pairs_from_records(problems, spec.pair_kind, spec.seed, spec.n or DEFAULT_GENERATED)


# ---------------------------------------------------------------------------- forwards
def _last_logits(model, ids, edits=None):
    """Float logits ``(batch, vocab)`` at the last position of ``ids`` with ``edits`` applied."""
    from probekit.causal.edits import edited

    with edited(model, edits):
        return model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float()


def _restored(ld_patched: float, ld_clean: float, ld_corrupt: float) -> float:
    gap = ld_clean - ld_corrupt
    return (ld_patched - ld_corrupt) / gap if abs(gap) >= MIN_GAP else math.nan


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _edits_for(chunk, sources: dict, width: int, device):
    """Per hook name of ``chunk`` (``(point, mask)`` jobs, one per batch row; ``None`` for a row left alone), a
    ``replace_at`` edit whose mask is the job's mask on its own rows and false elsewhere."""
    import torch

    from probekit.causal.edits import replace_at

    edits = {}
    for point in dict.fromkeys(job[0] for job in chunk if job is not None):
        mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, job in enumerate(chunk):
            if job is not None and job[0] == point:
                mask[row] = job[1][:width]
        edits[point] = replace_at(sources[point][:, :width], mask.to(device))
    return edits


def _judged(tokenizer, ids: list[int], problems: dict) -> dict:
    from probekit.evaluate.generation import split_completion
    from probekit.evaluate.judge import judge

    done = split_completion(ids, tokenizer)
    out = {"answer": done.answer, "finished": done.finished}
    for name, problem in problems.items():
        out[f"correct_{name}"] = bool(judge(problem, done.solution, done.answer)["correct"]) if problem else None
    return out


@dataclass
class _Runs:
    """The unpatched runs of one pair: LDs and the captured activations (row 0 clean, row 1 counterfactual)."""

    ld_clean: float
    ld_corrupt: float
    captured: dict


def _unpatched(model, pair: PairInput, points: Sequence[str], device) -> _Runs:
    import torch

    from probekit.causal.edits import edited

    ids = torch.tensor([pair.clean_ids, pair.counterfactual_ids], dtype=torch.long, device=device)
    with edited(model, None, capture=points) as captured:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float()
    ld = (logits[:, pair.clean_token] - logits[:, pair.counterfactual_token]).cpu().tolist()
    return _Runs(ld[0], ld[1], dict(captured))


def patch_pair(
    model,
    tokenizer,
    pair: PairInput,
    points: Sequence[str],
    roles: Sequence[str] = ROLE_CHOICES,
    *,
    direction: str = "denoise",
    generate: bool = True,
    positions: bool = False,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
) -> list[dict]:
    """The rows of one prepared pair (module doc): one per (point, role), or per (point, position) with
    ``positions``. Row keys: ``point``, ``layer``, ``component``, ``depth``, ``role``, ``position`` (position
    mode), ``n_positions``, ``ld_clean``, ``ld_corrupt``, ``ld_patched``, ``restored``, ``effect``, ``undefined``,
    ``direction`` and, when decoding, ``answer_patched``, ``finished``, ``clean_answer_restored``,
    ``counterfactual_answer``, ``correct_clean``, ``correct_counterfactual`` and the unpatched runs' answers
    and verdicts."""
    import torch

    from probekit.probe.hooks import n_layers

    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be denoise or noise, not {direction!r}")
    device = next(model.parameters()).device
    n_layer = n_layers(model)
    runs = _unpatched(model, pair, points, device)
    base_row, src_row = (1, 0) if direction == "denoise" else (0, 1)
    sources = {p: runs.captured[p][src_row : src_row + 1] for p in points}
    base_ids = [pair.clean_ids, pair.counterfactual_ids][base_row]
    length = len(base_ids)
    ld_base, ld_source = (
        (runs.ld_corrupt, runs.ld_clean) if direction == "denoise" else (runs.ld_clean, runs.ld_corrupt)
    )

    jobs: list[tuple[str, torch.Tensor]] = []
    labels: list[dict] = []
    if positions:
        for point in points:
            for pos in range(pair.first_diff, length):
                mask = torch.zeros(length, dtype=torch.bool)
                mask[pos] = True
                jobs.append((point, mask))
                labels.append({"point": point, "role": pair.roles[pos], "position": pos, "n_positions": 1})
    else:
        for point in points:
            for role in roles:
                mask = torch.tensor(role_mask(pair.roles, role), dtype=torch.bool)
                if bool(mask.any()):
                    jobs.append((point, mask))
                    labels.append({"point": point, "role": role, "n_positions": int(mask.sum())})

    ids = torch.tensor([base_ids], dtype=torch.long, device=device)
    lds: list[float] = []
    for chunk in _chunks(jobs, batch_size):
        edits = _edits_for(chunk, sources, length, device)
        logits = _last_logits(model, ids.expand(len(chunk), length), edits)
        lds += (logits[:, pair.clean_token] - logits[:, pair.counterfactual_token]).cpu().tolist()

    rows = []
    for label, ld in zip(labels, lds):
        restored = _restored(ld, runs.ld_clean, runs.ld_corrupt)
        gap = ld_source - ld_base
        rows.append(
            {
                **label,
                **point_info(label["point"], n_layer),
                "direction": direction,
                "ld_clean": runs.ld_clean,
                "ld_corrupt": runs.ld_corrupt,
                "ld_patched": ld,
                "restored": restored,
                "effect": (ld - ld_base) / gap if not math.isnan(restored) else math.nan,
                "undefined": math.isnan(restored),
            }
        )
    if generate and not positions:
        _decode(model, tokenizer, pair, jobs, rows, sources, base_row, max_new_tokens, batch_size, device)
    return rows


def _decode(model, tokenizer, pair, jobs, rows, sources, base_row, max_new_tokens, batch_size, device) -> None:
    """Greedy decoding of the unpatched runs and of every role patch restricted to the prompt; adds the judged
    fields to ``rows`` in place."""
    from probekit.causal.edits import edited, on_prefill
    from probekit.evaluate.generation import ModelGenerator, model_context
    from probekit.igsm.jobs import problem_of

    width = pair.prompt_length
    budget = min(max_new_tokens or pair.budget, model_context(model) - width)
    problems: dict = {}
    for name, record in (("clean", pair.clean), ("counterfactual", pair.counterfactual)):
        try:
            problems[name] = problem_of(record)
        except ValueError:
            problems[name] = None
    answers = {
        name: str(record["answer"]).strip()
        for name, record in (("clean", pair.clean), ("counterfactual", pair.counterfactual))
    }
    prompts = [pair.clean_ids[:width], pair.counterfactual_ids[:width]]
    # rows of the decoding batch: the two unpatched runs, then the role patches that touch the prompt
    todo: list[tuple[int | None, list[int], tuple[str, torch.Tensor] | None]] = [
        (None, prompts[0], None),
        (None, prompts[1], None),
    ]
    for r, (point, mask) in enumerate(jobs):
        if bool(mask[:width].any()):
            todo.append((r, prompts[base_row], (point, mask)))
    results: list[dict] = []
    for chunk in _chunks(todo, batch_size):
        # every prompt of the chunk has the same length: no padding, so a row's mask lines up with its prompt;
        # the edits apply to the prefill only (decoding continues from the patched prompt's cache)
        edits = _edits_for([t[2] for t in chunk], sources, width, device)
        generator = ModelGenerator(model, tokenizer, batch_size=len(chunk), device=device, progress=False)
        with edited(model, {point: on_prefill(e) for point, e in edits.items()}):
            for out in generator.generate_ids([t[1] for t in chunk], budget):
                results.append(_judged(tokenizer, out, problems))
    clean_run, cf_run = results[0], results[1]
    base = {
        "clean_run_answer": clean_run["answer"],
        "clean_run_correct": clean_run["correct_clean"],
        "counterfactual_run_answer": cf_run["answer"],
        "counterfactual_run_correct": cf_run["correct_counterfactual"],
    }
    for row in rows:
        row.update(base)
        row.update(
            {
                "prompt_positions": None,
                "answer_patched": None,
                "finished": None,
                "clean_answer_restored": None,
                "counterfactual_answer": None,
                "correct_clean": None,
                "correct_counterfactual": None,
            }
        )
    for (at, _, job), res in zip(todo[2:], results[2:]):
        assert at is not None and job is not None
        answer = None if res["answer"] is None else res["answer"].strip()
        rows[at].update(
            {
                "prompt_positions": int(job[1][:width].sum()),
                "answer_patched": answer,
                "finished": res["finished"],
                "clean_answer_restored": answer == answers["clean"],
                "counterfactual_answer": answer == answers["counterfactual"],
                "correct_clean": res["correct_clean"],
                "correct_counterfactual": res["correct_counterfactual"],
            }
        )


# ---------------------------------------------------------------------------- many pairs
def skipped_row(meta: dict, reason: str, message: str) -> dict:
    """The row of a pair that was not patched."""
    return {**meta, "skipped": True, "reason": reason, "message": message}


def patch_pairs(
    model,
    tokenizer,
    pairs: Iterable[tuple[int, dict]],
    *,
    components: Sequence[str] = ("resid_post",),
    roles: Sequence[str] = ROLE_CHOICES,
    direction: str = "denoise",
    generate: bool = True,
    positions: bool = False,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    progress: bool = False,
    extra: dict | None = None,
) -> list[dict]:
    """Rows for ``(index, pair record)`` items: :func:`patch_pair` rows with the pair's fields
    (:func:`pair_meta`), ``skipped = false`` and ``extra``; a :func:`skipped_row` for each pair that cannot be
    patched (:class:`SkipPair`)."""
    import torch
    from tqdm import tqdm

    from probekit.evaluate.generation import model_context
    from probekit.probe.hooks import n_layers

    pairs = list(pairs)
    points = patch_points(n_layers(model), components)
    context = model_context(model)
    extra = extra or {}
    rows: list[dict] = []
    with torch.no_grad():
        for index, pair in tqdm(pairs, desc="patch", unit="pair", file=sys.stderr, disable=not progress):
            meta = {**extra, **pair_meta(pair, index)}
            try:
                prepared = prepare_pair(pair, tokenizer, index, context)
            except SkipPair as err:
                rows.append(skipped_row(meta, err.reason, str(err)))
                continue
            except ValueError as err:  # a text the tokenizer cannot encode, a malformed member
                rows.append(skipped_row(meta, "invalid", f"{type(err).__name__}: {err}"))
                continue
            for row in patch_pair(
                model,
                tokenizer,
                prepared,
                points,
                roles,
                direction=direction,
                generate=generate,
                positions=positions,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
            ):
                rows.append({**meta, "skipped": False, **prepared.info, **row})
    return rows


def run_patch(spec: PatchSpec) -> list[dict]:
    """Load the checkpoint, read or make the pairs and patch them (:func:`patch_pairs`); the rows (flat,
    JSON-ready once NaN is mapped to null: :func:`json_rows`). Every row carries ``checkpoint`` (the folder's
    name), ``checkpoint_path``, ``n_layer``, ``d_model`` and ``seed``."""
    import torch

    from probekit.checkpoint import load_checkpoint, select_device

    if spec.pairs is not None:
        pairs = read_pairs(spec.pairs, spec.pair_kind, spec.n)
    elif spec.problems is not None:
        pairs = pairs_from_problems(spec.problems, spec.pair_kind, spec.seed, spec.n)
    elif spec.op is not None:
        pairs = generated_pairs(spec)
    else:
        items = list(spec.records or ())
        for i, pair in enumerate(items):
            try:
                check_pair_record(pair)
            except ValueError as err:
                raise ValueError(f"record {i}: {err}") from None
        pairs = [(i, p) for i, p in enumerate(items) if spec.pair_kind == "all" or p.get("kind") == spec.pair_kind]
        pairs = pairs[: spec.n] if spec.n else pairs
    torch.manual_seed(spec.seed)
    ckpt = load_checkpoint(spec.checkpoint, device=select_device(spec.device))
    model = ckpt.model.eval()
    path = Path(spec.checkpoint)
    extra = {
        "checkpoint": path.name,
        "checkpoint_path": str(path),
        "n_layer": int(model.config.num_hidden_layers),
        "d_model": int(model.config.hidden_size),
        "seed": spec.seed,
    }
    return patch_pairs(
        model,
        ckpt.tokenizer,
        pairs,
        components=spec.components,
        roles=spec.roles,
        direction=spec.direction,
        generate=spec.generate,
        positions=spec.positions,
        batch_size=spec.batch_size,
        max_new_tokens=spec.max_new_tokens,
        progress=spec.progress,
        extra=extra,
    )


# ---------------------------------------------------------------------------- summary
def json_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows with NaN floats as ``None`` (strict JSON)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair_key(row: dict) -> str:
    """A pair's identity across runs: the sweep job (or seed) that made it and its index there."""
    return f"{row.get('job_id', '')}:{row.get('seed', '')}:{row['pair']}"


def summarize(rows: Sequence[dict], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per (checkpoint, direction, pair kind, point, role) of the patched rows (pairs of different
    runs are told apart by ``job_id`` / ``seed``): ``restored`` (mean over pairs, and over
    positions in position mode), ``ci_low`` / ``ci_high`` (95% percentile interval of the bootstrap over pairs,
    :func:`probekit.probe.stats.bootstrap_ci`), ``n_pairs`` (pairs with a defined value), ``n_undefined``, and
    when decoded the share of pairs whose clean answer came back (``clean_answer_rate``, with
    ``clean_answer_ci_low`` / ``_high``) and whose patched solution is correct for the clean problem
    (``correct_clean_rate``)."""
    import numpy as np

    from probekit.probe.stats import bootstrap_ci, codes

    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("skipped") or "point" not in row:
            continue
        key = (row.get("checkpoint"), row.get("direction"), row.get("pair_kind"), row["point"], row["role"])
        cells.setdefault(key, []).append(row)
    out = []
    for (checkpoint, direction, kind, point, role), group in cells.items():
        defined = [r for r in group if _finite(r.get("restored"))]
        values = np.array([r["restored"] for r in defined], dtype=float)
        groups = codes([_pair_key(r) for r in defined])
        first = group[0]
        cell = {
            "checkpoint": checkpoint,
            "pair_kind": kind,
            "point": point,
            "layer": first.get("layer"),
            "component": first.get("component"),
            "depth": first.get("depth"),
            "role": role,
            "direction": direction,
            "n_pairs": len({_pair_key(r) for r in defined}),
            "n_undefined": len({_pair_key(r) for r in group if not _finite(r.get("restored"))}),
            "restored": float(values.mean()) if len(values) else math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
        }
        if len(values):
            cell["ci_low"], cell["ci_high"] = bootstrap_ci(values, groups, n_boot=n_boot, seed=seed)
        decoded = [r for r in group if r.get("clean_answer_restored") is not None]
        if decoded:
            hits = np.array([bool(r["clean_answer_restored"]) for r in decoded], dtype=float)
            correct = np.array([bool(r["correct_clean"]) for r in decoded], dtype=float)
            low, high = bootstrap_ci(hits, codes([_pair_key(r) for r in decoded]), n_boot=n_boot, seed=seed)
            cell.update(
                n_decoded=len(decoded),
                clean_answer_rate=float(hits.mean()),
                clean_answer_ci_low=low,
                clean_answer_ci_high=high,
                correct_clean_rate=float(correct.mean()),
            )
        out.append(cell)
    role_order = {r: i for i, r in enumerate(ROLE_CHOICES)}
    out.sort(
        key=lambda c: (
            str(c["checkpoint"]),
            str(c["direction"]),
            str(c["pair_kind"]),
            str(c["component"]),
            c["depth"],
            role_order.get(c["role"], 99),
        )
    )
    return out


def skipped_counts(rows: Iterable[dict]) -> dict:
    """``{"pairs", "patched", "skipped": {reason: count}}`` over the pair lines of ``rows``."""
    seen: dict = {}
    for row in rows:
        seen.setdefault(row["pair"], row.get("reason") if row.get("skipped") else None)
    skipped: dict[str, int] = {}
    for reason in seen.values():
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
    return {"pairs": len(seen), "patched": sum(r is None for r in seen.values()), "skipped": skipped}


__all__ = [
    "ALL",
    "COMPONENT_CHOICES",
    "DIRECTIONS",
    "MIN_GAP",
    "PairInput",
    "PatchSpec",
    "SkipPair",
    "check_pair_record",
    "json_rows",
    "pair_meta",
    "pairs_from_problems",
    "patch_pair",
    "patch_pairs",
    "patch_points",
    "point_info",
    "prepare_pair",
    "read_pairs",
    "run_patch",
    "skipped_counts",
    "summarize",
]
