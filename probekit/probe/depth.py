"""nece by layer and depth (paper §6, Fig. 10).

One nece probe per layer (:func:`depth_analysis`), trained on train-split nece examples, scored on **every
necessary parameter** of test-split problems (:func:`necessary_examples`, label 1) binned by ``distance`` =
shortest dependency distance to the query (``compute_labels(...).distance``; the query itself is 0). Every distance
present is a row (the paper plots 1..8), so per layer the counts add up to the number of necessary-parameter test
examples.

The paper's probe is the rank-8 V-probe (:class:`~probekit.probe.experiment.DepthSpec` defaults to it);
``rank=0`` (a linear head on cached frozen features, ``probe_layers``' cheap path) stays an option and is
labelled ``probe = "linear"`` in the rows (``"v-probe"`` otherwise).

Positives alone cannot tell a reader whether a probe reads the plan or just says "necessary" to everything, so
every row also carries, for its layer, the accuracy on **nece = false** test parameters (up to
``per_problem`` unnecessary parameters per test problem, drawn uniformly, seeded: ``accuracy_neg``,
``ci_low_neg``, ``ci_high_neg``, ``n_neg``) and the **training prior** ``train_prior`` = the share of nece =
true among the training labels (the accuracy of the all-true guess on positives is 1, on negatives 0).

:func:`depth_table`: ``layer, hook, distance, n, n_correct, accuracy, ci_low, ci_high`` (:func:`depth_analysis`
adds ``rank``, ``probe``, ``n_train``, ``train_prior``, the negative columns and ``bootstrap``). Intervals are
95% percentile intervals of the bootstrap over test *problems* (:mod:`probekit.probe.stats`; one problem gives
many necessary parameters) when the frame has a ``group`` column and ``bootstrap`` > 0, else Wilson 95%
(:func:`probekit.evaluate.metrics.wilson_interval`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from probekit.probe import stats
from probekit.probe.collect import ExampleCollector, wilson_rate
from probekit.probe.data import FreshData, ProbeBuilder, ProbeData, ProblemText, _draw_rng

DEPTH_COLUMNS = ("layer", "hook", "distance", "n", "n_correct", "accuracy", "ci_low", "ci_high")
NEGATIVE_COLUMNS = ("accuracy_neg", "ci_low_neg", "ci_high_neg", "n_neg")


def probe_kind(rank: int) -> str:
    """The ``probe`` column of depth rows: ``"v-probe"`` (rank > 0, the paper's) or ``"linear"`` (rank 0)."""
    return "v-probe" if rank > 0 else "linear"


def necessary_examples(
    problems: Iterable[ProblemText],
    tokenizer=None,
    max_len: int | None = None,
    progress=None,
    unnecessary_per_problem: int = 0,
    seed: int = 0,
) -> ProbeData:
    """A nece example for **every** necessary parameter of each problem (label 1, ``distance`` to the query),
    and up to ``unnecessary_per_problem`` of its unnecessary pool parameters (label 0), drawn uniformly without
    replacement (seeded by ``seed`` and the problem index)."""
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    out = ExampleCollector((), max_len)
    for item in problems:
        builder = ProbeBuilder(item, tokenizer)
        for name in builder.labels.nece:
            out.add(builder, "nece", name)
        for name in _unnecessary_draw(builder, unnecessary_per_problem, seed):
            out.add(builder, "nece", name)
        if progress is not None:
            progress(1)
    return out.data(["nece"])


def _unnecessary_draw(builder: ProbeBuilder, k: int, seed: int) -> list[str]:
    """Up to ``k`` unnecessary pool parameters of one problem, uniformly without replacement (seeded)."""
    necessary = set(builder.labels.nece)
    names = [n for n in builder.pool_names if n not in necessary]
    if len(names) <= k:
        return names
    rng = _draw_rng(seed, builder.item.index, "depth-unnecessary")
    return [names[i] for i in sorted(rng.sample(range(len(names)), k))]


def depth_data(
    preset: str = "med",
    fmt: str = "pq",
    n_train: int = 1000,
    n_test: int = 400,
    seed: int = 0,
    op: int | None = None,
    test_op: int | None = None,
    reask: bool = False,
    tokenizer=None,
    per_problem: int = 10,
    max_len: int | None = None,
    progress=None,
    fresh: bool = False,
) -> tuple[ProbeData | FreshData, ProbeData]:
    """Train: the usual nece probe data of ``n_train`` train-split problems (seed ``seed``; ``fresh``: a
    :class:`~probekit.probe.data.FreshData` with ``n_train`` new problems every epoch). Test: every necessary
    parameter and up to ``per_problem`` unnecessary ones of ``n_test`` test-split problems (seed ``seed + 1``,
    ``test_op`` / ``reask`` as in ``train_test_data``)."""
    from probekit.probe.data import examples_from_config, problems_from_config, split_configs

    train_cfg, test_cfg = split_configs(preset, fmt, seed, op, test_op, reask)
    build = {"tasks": ["nece"], "seed": seed, "tokenizer": tokenizer, "per_problem": per_problem, "max_len": max_len}
    first = examples_from_config(train_cfg, n_train, progress=progress, **build)
    train = FreshData(first, train_cfg, n_train, build) if fresh else first
    problems = problems_from_config(test_cfg, n_test)
    test = necessary_examples(problems, tokenizer, max_len, progress, unnecessary_per_problem=per_problem, seed=seed)
    return train, test


def rate_interval(correct: np.ndarray, groups: np.ndarray | None, bootstrap: int, seed: int = 0):
    """``(n, k, rate, low, high)`` of boolean ``correct``: the problem bootstrap interval (``groups``: problem
    codes, ``bootstrap`` resamples, seeded) when given, else Wilson 95%."""
    n, k = len(correct), int(np.sum(correct))
    rate, low, high = wilson_rate(k, n)
    if groups is not None and bootstrap > 0 and n:
        low, high = stats.bootstrap_ci(correct.astype(np.float64), stats.codes(list(groups)), None, bootstrap, seed)
    return n, k, rate, low, high


def depth_table(frame, bootstrap: int = stats.N_BOOT, seed: int = 0):
    """Per (layer, distance): n, n_correct, accuracy and its interval (module doc), from a frame with columns
    layer, hook, distance, label, pred (the rows of necessary parameters) and optionally ``group`` (problem)."""
    import pandas as pd

    rows = []
    if len(frame):
        for (layer, hook, distance), sub in frame.groupby(["layer", "hook", "distance"], sort=True):
            groups = sub["group"].to_numpy() if "group" in sub else None
            n, k, acc, low, high = rate_interval((sub["pred"] == sub["label"]).to_numpy(), groups, bootstrap, seed)
            rows.append(
                {
                    "layer": layer,
                    "hook": hook,
                    "distance": int(distance),
                    "n": n,
                    "n_correct": k,
                    "accuracy": acc,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows, columns=list(DEPTH_COLUMNS))


def _fit_predict(
    model, train: ProbeData | FreshData, test: ProbeData, names: list[str], rank: int, progress, **probe_kwargs
):
    """``({hook: predictions on test}, {hook: VProbe})``: one nece probe per hook (rank 0: on cached features)."""
    from probekit.probe.layers import collect_features
    from probekit.probe.vprobe import VProbe

    preds, probes = {}, {}
    empty = np.zeros(0, dtype=np.int64)
    if rank == 0:
        amp = probe_kwargs.get("amp", "auto")
        f_train = collect_features(model, train, names, probe_kwargs.get("eval_batch_size"), amp)
        f_test = collect_features(model, test, names, probe_kwargs.get("eval_batch_size"), amp) if len(test) else None
    for name in names:
        probe = VProbe("nece", rank=rank, layer=name, progress=progress, **probe_kwargs)
        if rank == 0:
            probe.fit_features(f_train[name], train.labels)
            probe.layer_name_ = name
            preds[name] = probe.predict_features(f_test[name]) if f_test is not None else empty
        else:
            probe.fit(model, train)
            preds[name] = probe.predict(test) if len(test) else empty
        probes[name] = probe
    return preds, probes


def _negative_columns(test: ProbeData, pred: np.ndarray, bootstrap: int, seed: int) -> dict:
    """The accuracy on the nece = false test examples of one layer, with its problem-bootstrap interval."""
    negative = test.labels == 0
    groups = stats.problem_groups(test.meta, len(test))[negative]
    n, _, acc, low, high = rate_interval(pred[negative] == 0, groups, bootstrap, seed)
    return dict(zip(NEGATIVE_COLUMNS, (acc, low, high, n)))


def depth_analysis(
    model,
    train: ProbeData | FreshData,
    test: ProbeData,
    layers="all",
    rank: int = 8,
    return_probes: bool = False,
    progress: bool | str = False,
    bootstrap: int = stats.N_BOOT,
    **probe_kwargs,
):
    """Fig. 10: one nece probe per layer fitted on ``train``, scored on the necessary-parameter examples of
    ``test`` (label 1 with a distance) binned by distance, and on its nece = false examples (label 0): a
    :func:`depth_table` DataFrame with ``rank``, ``probe``, ``n_train``, ``train_prior``, the negative columns and
    ``bootstrap`` (module doc). ``rank=0`` caches every layer's [END] features in one forward
    (``probe_layers``' cheap path). ``return_probes=True`` returns ``(table, {hook: VProbe})``."""
    import pandas as pd

    from probekit.probe import hooks
    from probekit.probe.layers import resolve_layers

    train = train.task("nece")
    test = test.task("nece")
    keep = np.array([y == 0 or d is not None for y, d in zip(test.labels, test.meta["distance"])], dtype=bool)
    test = test.select(keep)
    if not len(train):
        raise ValueError("no nece training examples")
    names = resolve_layers(layers, hooks.n_layers(model))
    if probe_kwargs.get("device"):
        model.to(probe_kwargs["device"])
    seed = int(probe_kwargs.get("seed", 0))
    preds, probes = _fit_predict(model, train, test, names, rank, progress, **probe_kwargs)
    positive = test.labels == 1
    distance = np.asarray([int(d) for d, p in zip(test.meta["distance"], positive) if p], dtype=np.int64)
    groups = stats.problem_groups(test.meta, len(test))[positive]
    frames = [
        pd.DataFrame(
            {
                "layer": [hooks.layer_label(name)] * len(distance),
                "hook": name,
                "distance": distance,
                "label": 1,
                "pred": preds[name][positive],
                "group": groups,
            }
        )
        for name in names
    ]
    frame = pd.concat(frames, ignore_index=True)
    if frame["layer"].map(type).nunique() > 1:
        frame["layer"] = frame["layer"].astype(str)
    table = depth_table(frame, bootstrap, seed)
    order = {name: i for i, name in enumerate(names)}
    table = table.sort_values(["hook", "distance"], key=lambda s: s.map(order) if s.name == "hook" else s)
    table = table.reset_index(drop=True)
    negatives = pd.DataFrame([{"hook": n, **_negative_columns(test, preds[n], bootstrap, seed)} for n in names])
    table = table.merge(negatives, on="hook", how="left")
    table["rank"] = rank
    table["probe"] = probe_kind(rank)
    table["n_train"] = len(train)
    table["train_prior"] = float(np.mean(train.labels == 1))
    table["bootstrap"] = int(bootstrap)
    return (table, probes) if return_probes else table
