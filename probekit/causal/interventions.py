"""``probekit intervene``: does the direction a probe reads matter to the model more than any direction does?

:func:`run_intervention` (:class:`InterveneSpec`) takes a binary probe at one residual point (trained here on
``n_train`` train-split problems, or loaded from a saved probe folder), extracts its raw-space direction
(:func:`probekit.causal.directions.probe_direction`), and runs the same intervention (ablate or steer,
:mod:`probekit.causal.directions`) along it and along ``n_random`` random unit directions (default 10, the
issue's minimum), plus a no-intervention baseline. For each it measures

1. **the probe's own accuracy** on its test examples (``n_test`` test-split problems) after the intervention
   is applied to the state the probe reads (sanity check: mean or zero ablation of the probe direction makes
   its logit constant, so the accuracy falls to that of one constant answer), with a 95% bootstrap interval over
   problems and the spread (std) of its logit difference;
2. **the model's behaviour** under the intervention: greedy generation
   (:class:`~probekit.evaluate.generation.ModelGenerator`, KV cache, batched) inside
   :func:`probekit.causal.edits.edited`, so every forward (the prompt's prefill and each new token) has its state
   at the probe's read point edited (``positions="all"``; ``"prompt"``: the prefill only), on ``n_eval`` problems
   per evaluation set (``probekit eval --sets`` syntax, default op 2, 3, 4 of the test split), judged by the
   evaluation package's full-solution checker: full-solution accuracy (Wilson 95% interval), unnecessary
   parameters written per solution (bootstrap interval) and per correct solution, mean first-error position of
   the wrong solutions (1-based, normalised; bootstrap interval), and the share of problems whose solution
   changed from the baseline's; each with the paired change from the baseline and its bootstrap interval over
   problems (``delta_accuracy``, ``delta_unnecessary``).

Every direction is judged on the same problems. :func:`summarize_interventions` puts the probe direction beside
the random directions' distribution for each metric: their mean, min and max, and the probe's rank by the size
of its change from the baseline, with the empirical p-value ``(1 + #{random: |change| >= probe's}) /
(n_random + 1)`` (the smallest possible is ``1 / (n_random + 1)``: about 0.09 with 10 random directions).

V-probes (``rank > 0``): the head reads states computed with the probe's embedding update. The direction, its
ablation constant and steering unit are measured on those states, and the probe-accuracy check applies the edit
to them; the behaviour is measured by editing the *unmodified* model's residual stream along that direction
(the update is not applied during generation). The default is ``rank=0``: a linear probe on the unmodified
model's states, where both halves edit the same states.

Where the probe reads: its head reads the state at the final ``[END]`` of an appended probe suffix, a position
that never occurs in a generated solution; the intervention therefore edits every position (or the prompt's) at
the probe's layer, along the direction that separates the labels at ``[END]``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from probekit.causal.choices import ABLATE_VALUES, MIN_RANDOM, MODES, POSITIONS
from probekit.configs import SettingError, check_at_least
from probekit.texttable import fixed_width, number

METRICS = ("probe_accuracy", "accuracy", "unnecessary_per_solution", "first_error_position", "solutions_changed")
"""The metrics :func:`summarize_interventions` compares between the probe and the random directions."""

ROW_COLUMNS = (
    "checkpoint",
    "task",
    "hook",
    "layer",
    "rank",
    "mode",
    "strength",
    "ablate_value",
    "positions",
    "direction",
    "direction_index",
    "value",
    "projection_mean",
    "projection_std",
    "cosine_with_probe",
    "probe_accuracy",
    "probe_ci_low",
    "probe_ci_high",
    "probe_majority",
    "probe_logit_mean",
    "probe_logit_std",
    "probe_n",
    "n",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "delta_accuracy",
    "delta_accuracy_ci_low",
    "delta_accuracy_ci_high",
    "unnecessary_per_solution",
    "unnecessary_ci_low",
    "unnecessary_ci_high",
    "delta_unnecessary",
    "delta_unnecessary_ci_low",
    "delta_unnecessary_ci_high",
    "unnecessary_per_correct",
    "first_error_position",
    "first_error_position_ci_low",
    "first_error_position_ci_high",
    "n_wrong",
    "solutions_changed",
    "accuracy_by_set",
    "sets",
    "seed",
    "n_random",
    "seconds",
)
"""The columns of every row :func:`run_intervention` returns (the probe row adds the summary columns
``<metric>_rank`` and ``<metric>_p_value``)."""


@dataclass(frozen=True)
class InterveneSpec:
    """``probekit intervene CKPT``: one probe direction and ``n_random`` random ones, ablated or steered."""

    checkpoint: str
    """The checkpoint folder."""
    task: str = "nece"
    """The probe task (binary: nece, dep, known, can_next, nece_next)."""
    layer: str | int | None = None
    """The residual point probed and edited (a block index or hook name); None: ``ln_final.hook_out`` (the
    probes' default read-out), or the saved probe's layer with ``probe``."""
    rank: int = 0
    """0: a linear probe (default); > 0: a V-probe (module doc: what the intervention then edits)."""
    mode: str = "ablate"
    """``ablate`` or ``steer`` (:data:`~probekit.causal.choices.MODES`)."""
    strength: float = 1.0
    """steer: ``alpha``, in units of the std of the probe direction's projection (negative: toward label 0)."""
    ablate_value: str = "mean"
    """ablate: ``mean`` (the training states' mean projection) or ``zero``."""
    n_random: int = MIN_RANDOM
    """Random directions beside the probe's (>= 1; the issue asks for at least 10)."""
    positions: str = "all"
    """``all`` positions, or the ``prompt``'s only (:data:`~probekit.causal.choices.POSITIONS`)."""
    probe: str | None = None
    """A saved probe folder (``VProbe.save``, e.g. from ``probekit probe --out``) instead of training one."""
    n_train: int = 300
    """Train-split problems of the probe data (the probe's training set, and its projection statistics)."""
    n_test: int = 200
    """Test-split problems on which the probe's own accuracy is scored."""
    per_problem: int = 10
    """Probe examples per problem."""
    steps: int = 1000
    """Optimizer steps of the probe trained here."""
    sets: str = "2,3,4"
    """Evaluation sets of the behaviour measurement (``probekit eval --sets`` syntax)."""
    n_eval: int = 50
    """Problems per evaluation set."""
    max_new_tokens: int | None = None
    """A fixed generation budget (None: ``probekit eval``'s per set)."""
    seed: int = 0
    """Seeds the probe data, the probe, the random directions, the evaluation problems and the bootstrap."""
    device: str | None = None
    """Torch device (None: cuda when available, else cpu)."""
    batch_size: int | None = None
    """Generation batch (None: 256 on CUDA, 32 on CPU)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the intervals over problems (0: none, NaN)."""
    skip_checks: bool = False
    """Skip the fast load-time model checks."""
    progress: bool = True
    """Progress bars on stderr."""

    def check(self) -> None:
        """Raise ``ValueError`` (a :class:`~probekit.configs.SettingError` naming the option) for a setting out
        of range."""
        from probekit.probe.data import check_task, n_classes

        check_task(self.task)
        if n_classes(self.task) != 2:
            raise ValueError(f"task {self.task!r} is not binary: an intervention needs one probe direction")
        for name, allowed in (("mode", MODES), ("ablate_value", ABLATE_VALUES), ("positions", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise SettingError(name, f"must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if not math.isfinite(self.strength):
            raise SettingError("strength", f"must be a finite number, not {self.strength!r}")
        check_at_least(self, 1, "n_random", "n_train", "n_test", "per_problem", "steps", "n_eval", "batch_size")
        check_at_least(self, 1, "max_new_tokens")
        check_at_least(self, 0, "rank", "bootstrap", "seed")
        if self.probe is not None and not (Path(self.probe) / "probe.json").is_file():
            raise ValueError(f"--probe {self.probe}: no saved probe there (probe.json missing)")
        if self.layer is not None:
            _check_layer(self.checkpoint, self.layer)


def _check_layer(checkpoint: str, layer) -> None:
    """Resolve ``layer`` against the block count in the checkpoint's ``config.json`` (when readable), so a bad
    layer fails before the model is loaded."""
    import json

    from probekit.probe import hooks

    try:
        config = json.loads((Path(checkpoint) / "config.json").read_text())
        n_layer = int(config["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # the checkpoint loader says what is wrong with the folder
    hooks.layer_name(layer, n_layer)


# ---------------------------------------------------------------------------- the job
def run_intervention(spec: InterveneSpec) -> list[dict]:
    """Run ``spec`` (module doc): one row for the baseline (``direction="none"``), one for the probe direction
    (``"probe"``, with the summary columns of :func:`summarize_interventions`) and one per random direction
    (``"random"``, ``direction_index`` 0..n_random-1); columns :data:`ROW_COLUMNS`."""
    import torch

    from probekit.causal.directions import interventions, probe_direction
    from probekit.causal.edits import edited
    from probekit.evaluate.generation import ModelGenerator
    from probekit.evaluate.run import evaluate_set
    from probekit.evaluate.sets import draw_set, generation_budget, parse_sets
    from probekit.probe import hooks

    spec.check()
    start = time.perf_counter()
    model, tokenizer, preset, fmt, device = _load(spec)
    probe, train, test = _probe_and_data(spec, model, tokenizer, preset, fmt, device)
    hook = probe.layer_name_
    direction = probe_direction(probe)
    train_states = probe.transform(train)
    test_states = probe.transform(test)
    _check_direction(probe, direction, test_states)
    plan = interventions(
        direction,
        train_states,
        mode=spec.mode,
        strength=spec.strength,
        ablate_value=spec.ablate_value,
        n_random=spec.n_random,
        seed=spec.seed,
    )
    sets = parse_sets(spec.sets, preset, spec.n_eval, spec.seed, fmt)
    drawn = [(s, draw_set(s)) for s in sets]
    gen = ModelGenerator(
        model,
        tokenizer,
        batch_size=spec.batch_size or (256 if str(device).startswith("cuda") else 32),
        device=device,
        seed=spec.seed,
        progress=False,
    )
    common = {
        "checkpoint": str(spec.checkpoint),
        "task": spec.task,
        "hook": hook,
        "layer": hooks.layer_label(hook),
        "rank": probe.rank,
        "mode": spec.mode,
        "strength": spec.strength if spec.mode == "steer" else None,
        "ablate_value": spec.ablate_value if spec.mode == "ablate" else None,
        "positions": spec.positions,
    }
    from probekit.probe import stats

    groups = stats.problem_groups(test.meta, len(test))
    labels = test.labels
    rows: list[dict] = []
    baseline = None
    bar = _bar(len(plan) + 1, spec.progress)
    try:
        for iv in [None, *plan]:
            t0 = time.perf_counter()
            states = test_states if iv is None else iv.apply(test_states)
            row = {
                **common,
                "direction": "none" if iv is None else iv.direction,
                "direction_index": None if iv is None else iv.index,
                "value": None if iv is None else iv.value,
                "projection_mean": None if iv is None else iv.projection_mean,
                "projection_std": None if iv is None else iv.projection_std,
                "cosine_with_probe": None if iv is None else float(iv.unit @ plan[0].unit),
                **_probe_scores(probe, direction, states, labels, groups, spec),
            }
            results = []
            with torch.no_grad(), edited(model, {} if iv is None else {hook: iv.edit(spec.positions)}):
                for eval_set, problems in drawn:
                    budget = spec.max_new_tokens or generation_budget(eval_set, problems)
                    results.append(evaluate_set(eval_set, problems, gen, max_new_tokens=budget))
            behaviour = _behaviour(results, baseline, spec)
            if iv is None:
                baseline = behaviour.pop("_per_problem")
            else:
                behaviour.pop("_per_problem")
            row.update(behaviour)
            row.update(
                sets=spec.sets, seed=spec.seed, n_random=spec.n_random, seconds=round(time.perf_counter() - t0, 3)
            )
            rows.append({k: row.get(k) for k in ROW_COLUMNS})
            bar.update()
    finally:
        bar.close()
    probe_row = next(r for r in rows if r["direction"] == "probe")
    for s in summarize_interventions(rows):
        probe_row[f"{s['metric']}_rank"] = s["probe_rank"]
        probe_row[f"{s['metric']}_p_value"] = s["p_value"]
    rows = [json_ready(r) for r in rows]
    if spec.progress:
        print(f"probekit intervene: {len(rows)} runs in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return rows


def json_ready(value):
    """``value`` with NaN as None and numpy scalars as Python numbers, through dicts and lists (valid JSON)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="intervene", unit="dir", file=sys.stderr, disable=not progress, dynamic_ncols=True)


def _load(spec: InterveneSpec):
    """``(model, tokenizer, preset, format, device)`` of the checkpoint, after the fast checks."""
    from probekit.checkpoint import load_checkpoint, select_device, training_family

    device = select_device(spec.device)
    model, tokenizer, provenance = load_checkpoint(spec.checkpoint, device=device)
    if not spec.skip_checks:
        from probekit.modelcheck import require_healthy

        require_healthy((model, tokenizer, provenance), device=device)
    preset, fmt = training_family(provenance)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, preset, fmt, device


def _probe_and_data(spec: InterveneSpec, model, tokenizer, preset: str, fmt: str, device: str):
    """The fitted probe (trained here or loaded) and its train / test examples of ``spec.task``."""
    from probekit.probe import hooks
    from probekit.probe.data import ProbeData, train_test_data
    from probekit.probe.runs import probe_batch_size
    from probekit.probe.vprobe import VProbe

    n_layer = hooks.n_layers(model)
    wanted = None if spec.layer is None else hooks.layer_name(spec.layer, n_layer)
    probe = None
    if spec.probe is not None:
        probe = VProbe.load(spec.probe, model=model, device=device)
        if probe.task != spec.task:
            raise ValueError(f"the saved probe is a {probe.task!r} probe, not {spec.task!r}: pass --task {probe.task}")
        if wanted is not None and probe.layer_name_ != wanted:
            raise ValueError(f"the saved probe reads {probe.layer_name_}, not {wanted}")
    context = int(model.config.max_position_embeddings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # examples longer than the context are left out
        train, test = train_test_data(
            preset,
            fmt,
            spec.n_train,
            spec.n_test,
            spec.seed,
            tasks=(spec.task,),
            tokenizer=tokenizer,
            per_problem=spec.per_problem,
            max_len=context,
        )
    if not isinstance(train, ProbeData):  # a fixed set of problems (no fresh data per epoch)
        raise TypeError(f"expected ProbeData for the probe's training set, got {type(train).__name__}")
    train, test = train.task(spec.task), test.task(spec.task)
    if not len(train) or not len(test):
        raise ValueError(f"no {spec.task!r} probe examples (all longer than the context?)")
    if probe is None:
        probe = VProbe(
            spec.task,
            rank=spec.rank,
            layer=wanted or hooks.READOUT,
            steps=spec.steps,
            batch_size=probe_batch_size(preset),
            seed=spec.seed,
            device=device,
            progress=f"probe {spec.task}" if spec.progress else False,
        ).fit(model, train)
    return probe, train, test


def _check_direction(probe, direction, states) -> None:
    """The extracted direction reproduces the probe's logit difference (guards the algebra against a change of
    the probe's parametrisation)."""
    import torch

    with torch.no_grad():
        logits = probe.params_.logits(states).double()
    ours = direction.logit_difference(states)
    tol = 1e-3 * (1.0 + float(ours.abs().max()))
    if not torch.allclose(logits[:, 1] - logits[:, 0], ours.to(logits.device), atol=tol):
        raise RuntimeError("the extracted probe direction does not reproduce the probe's logits")


def _probe_scores(probe, direction, states, labels, groups, spec: InterveneSpec) -> dict:
    """The probe's accuracy (bootstrap 95% interval over problems), majority baseline and logit-difference
    spread on ``states``."""
    import numpy as np
    import torch

    from probekit.probe import stats

    diff = direction.logit_difference(states).cpu().numpy()
    with torch.no_grad():
        logits = probe.params_.logits(states).double().cpu().numpy()
    pred = logits.argmax(1)
    correct = (pred == labels).astype(float)
    low, high = (
        stats.bootstrap_ci(correct, groups, n_boot=spec.bootstrap, seed=spec.seed)
        if spec.bootstrap
        else (math.nan,) * 2
    )
    return {
        "probe_accuracy": float(correct.mean()),
        "probe_ci_low": low,
        "probe_ci_high": high,
        "probe_majority": float(np.mean(labels == probe.majority_class_)),
        "probe_logit_mean": float(diff.mean()),
        "probe_logit_std": float(diff.std()),
        "probe_n": int(len(labels)),
    }


def _behaviour(results, baseline: dict | None, spec: InterveneSpec) -> dict:
    """The behaviour columns pooled over the evaluation sets' judged records; ``_per_problem`` holds the arrays
    the paired changes from the baseline need."""
    import numpy as np

    from probekit.evaluate import metrics
    from probekit.probe import stats

    records = [r for res in results for r in res.records]
    correct = np.array([bool(r["correct"]) for r in records])
    unnecessary = np.array([len(r["verdict"]["unnecessary"]) for r in records], dtype=float)
    solutions = [r["solution"] for r in records]
    wrong = [r for r in records if not r["correct"]]
    n = len(records)
    prop = metrics.proportion(correct)
    nan2 = (math.nan, math.nan)
    unnecessary_ci = metrics.bootstrap_mean_interval(unnecessary, seed=spec.seed) if spec.bootstrap and n else nan2
    first, first_low, first_high = metrics.first_error_position_interval(
        [r["first_error_index"] for r in wrong], [r["n_sentences"] for r in wrong], seed=spec.seed
    )
    out = {
        "n": n,
        "correct": int(correct.sum()),
        "accuracy": prop["accuracy"],
        "ci_low": prop["ci_low"],
        "ci_high": prop["ci_high"],
        "unnecessary_per_solution": float(unnecessary.mean()) if n else math.nan,
        "unnecessary_ci_low": unnecessary_ci[0],
        "unnecessary_ci_high": unnecessary_ci[1],
        "unnecessary_per_correct": metrics.unnecessary_per_correct(unnecessary.astype(int).tolist(), correct.tolist()),
        "first_error_position": first,
        "first_error_position_ci_low": first_low,
        "first_error_position_ci_high": first_high,
        "n_wrong": len(wrong),
        "accuracy_by_set": {res.eval_set.name: res.row["accuracy"] for res in results},
        "_per_problem": {"correct": correct, "unnecessary": unnecessary, "solutions": solutions},
    }
    if baseline is None:
        out.update(
            delta_accuracy=0.0,
            delta_accuracy_ci_low=0.0,
            delta_accuracy_ci_high=0.0,
            delta_unnecessary=0.0,
            delta_unnecessary_ci_low=0.0,
            delta_unnecessary_ci_high=0.0,
            solutions_changed=0.0,
        )
        return out
    d_correct = correct.astype(float) - baseline["correct"].astype(float)
    d_unnecessary = unnecessary - baseline["unnecessary"]
    boot = stats.bootstrap_means(
        {"accuracy": (d_correct, None), "unnecessary": (d_unnecessary, None)}, None, spec.bootstrap, spec.seed
    )
    acc_ci = stats.percentile_interval(boot["accuracy"]) if spec.bootstrap else nan2
    unn_ci = stats.percentile_interval(boot["unnecessary"]) if spec.bootstrap else nan2
    changed = [a != b for a, b in zip(solutions, baseline["solutions"])]
    out.update(
        delta_accuracy=float(d_correct.mean()) if n else math.nan,
        delta_accuracy_ci_low=acc_ci[0],
        delta_accuracy_ci_high=acc_ci[1],
        delta_unnecessary=float(d_unnecessary.mean()) if n else math.nan,
        delta_unnecessary_ci_low=unn_ci[0],
        delta_unnecessary_ci_high=unn_ci[1],
        solutions_changed=float(np.mean(changed)) if n else math.nan,
    )
    return out


# ---------------------------------------------------------------------------- summary
def summarize_interventions(rows: list[dict], metrics=METRICS) -> list[dict]:
    """Per metric: the baseline, the probe direction and the random directions' mean, min and max, the changes
    from the baseline, the probe's rank among all directions by ``|change|`` (1 = largest; ties rank the probe
    first) and the empirical p-value ``(1 + #{random: |change| >= |probe change|}) / (n_random + 1)``.

    ``rows``: those of one :func:`run_intervention` (one ``none``, one ``probe`` and the ``random`` rows).
    """
    import numpy as np

    def of(kind):
        return [r for r in rows if r.get("direction") == kind]

    none, probe, random = of("none"), of("probe"), of("random")
    if len(none) != 1 or len(probe) != 1 or not random:
        raise ValueError("summarize_interventions needs one 'none' row, one 'probe' row and random rows")
    out = []
    for metric in metrics:
        base = _num(none[0].get(metric))
        p = _num(probe[0].get(metric))
        r = np.array([_num(x.get(metric)) for x in random], dtype=float)
        finite = r[~np.isnan(r)]
        p_change = abs(p - base)
        r_change = np.abs(finite - base)
        comparable = not (math.isnan(p_change) or not len(finite))
        out.append(
            {
                "metric": metric,
                "none": base,
                "probe": p,
                "probe_change": p - base,
                "random_mean": float(finite.mean()) if len(finite) else math.nan,
                "random_min": float(finite.min()) if len(finite) else math.nan,
                "random_max": float(finite.max()) if len(finite) else math.nan,
                "random_change_mean": float((finite - base).mean()) if len(finite) else math.nan,
                "probe_rank": int(1 + (r_change > p_change).sum()) if comparable else None,
                "p_value": float((1 + (r_change >= p_change).sum()) / (len(finite) + 1)) if comparable else math.nan,
                "n_random": int(len(finite)),
            }
        )
    return out


def _num(value) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def format_summary(summary: list[dict]) -> str:
    """A fixed-width text table of :func:`summarize_interventions`, for stderr."""

    header = ["metric", "none", "probe", "random mean [min, max]", "probe rank", "p"]
    lines = [
        [
            s["metric"],
            number(s["none"]),
            number(s["probe"]),
            f"{number(s['random_mean'])} [{number(s['random_min'])}, {number(s['random_max'])}]",
            "-" if s["probe_rank"] is None else f"{s['probe_rank']}/{s['n_random'] + 1}",
            number(s["p_value"], 3),
        ]
        for s in summary
    ]
    return fixed_width(header, lines)


def spec_dict(spec: InterveneSpec) -> dict:
    """The spec as a plain dict (for logs)."""
    return asdict(spec)
