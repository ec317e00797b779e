"""nece by layer and depth (paper §6, Fig. 10).

One nece probe per layer (:func:`depth_analysis`; ``rank=0`` takes the cached-feature path of ``probe_layers``),
trained on train-split nece examples, scored on **every necessary parameter** of test-split problems
(:func:`necessary_examples`, label 1) binned by ``distance`` = shortest dependency distance to the query
(``compute_labels(...).distance``; the query itself is 0). Every distance present is a row (the paper plots
1..8), so per layer the counts add up to the number of necessary-parameter test examples.

:func:`depth_table`: ``layer, hook, distance, n, n_correct, accuracy, ci_low, ci_high`` (:func:`depth_analysis`
adds ``rank`` and ``n_train``); intervals are Wilson 95% (:func:`probekit.evaluate.metrics.wilson_interval`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from probekit.probe.collect import ExampleCollector, wilson_rate
from probekit.probe.data import ProbeBuilder, ProbeData, ProblemText

DEPTH_COLUMNS = ("layer", "hook", "distance", "n", "n_correct", "accuracy", "ci_low", "ci_high")


def necessary_examples(
    problems: Iterable[ProblemText], tokenizer=None, max_len: int | None = None, progress=None
) -> ProbeData:
    """A nece example for **every** necessary parameter of each problem (label 1, ``distance`` to the query)."""
    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    out = ExampleCollector((), max_len)
    for item in problems:
        builder = ProbeBuilder(item, tokenizer)
        for name in builder.labels.nece:
            out.add(builder, "nece", name)
        if progress is not None:
            progress(1)
    return out.data(["nece"])


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
) -> tuple[ProbeData, ProbeData]:
    """Train: the usual nece probe data of ``n_train`` train-split problems (seed ``seed``). Test: every necessary
    parameter of ``n_test`` test-split problems (seed ``seed + 1``, ``test_op`` / ``reask`` as in
    ``train_test_data``)."""
    from probekit.probe.data import examples_from_config, problems_from_config, split_configs

    train_cfg, test_cfg = split_configs(preset, fmt, seed, op, test_op, reask)
    train = examples_from_config(
        train_cfg,
        n_train,
        tasks=["nece"],
        seed=seed,
        tokenizer=tokenizer,
        per_problem=per_problem,
        max_len=max_len,
        progress=progress,
    )
    test = necessary_examples(problems_from_config(test_cfg, n_test), tokenizer, max_len, progress)
    return train, test


def depth_table(frame):
    """Per (layer, distance): n, n_correct, accuracy and its Wilson interval, from a frame with columns layer,
    hook, distance, label, pred (the rows of necessary parameters)."""
    import pandas as pd

    rows = []
    if len(frame):
        for (layer, hook, distance), sub in frame.groupby(["layer", "hook", "distance"], sort=True):
            n = len(sub)
            k = int((sub["pred"] == sub["label"]).sum())
            acc, low, high = wilson_rate(k, n)
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


def depth_analysis(
    model,
    train: ProbeData,
    test: ProbeData,
    layers="all",
    rank: int = 0,
    return_probes: bool = False,
    progress: bool | str = False,
    **probe_kwargs,
):
    """Fig. 10: one nece probe per layer fitted on ``train``, scored on the necessary-parameter examples of
    ``test`` (label 1 with a distance; others are ignored), binned by distance: a :func:`depth_table` DataFrame
    with ``rank``. ``rank=0`` caches every layer's [END] features in one forward (``probe_layers``' cheap path).
    ``return_probes=True`` returns ``(table, {hook: VProbe})``."""
    import pandas as pd

    from probekit.probe import hooks
    from probekit.probe.layers import collect_features, resolve_layers
    from probekit.probe.vprobe import VProbe

    train = train.task("nece")
    test = test.task("nece")
    keep = np.array([y == 1 and d is not None for y, d in zip(test.labels, test.meta["distance"])], dtype=bool)
    test = test.select(keep)
    if not len(train):
        raise ValueError("no nece training examples")
    names = resolve_layers(layers, hooks.n_layers(model))
    if probe_kwargs.get("device"):
        model.to(probe_kwargs["device"])
    preds, probes = {}, {}
    if rank == 0:
        amp = probe_kwargs.get("amp", "auto")
        f_train = collect_features(model, train, names, probe_kwargs.get("eval_batch_size"), amp)
        f_test = collect_features(model, test, names, probe_kwargs.get("eval_batch_size"), amp) if len(test) else None
        for name in names:
            probe = VProbe("nece", rank=0, layer=name, progress=progress, **probe_kwargs)
            probe.fit_features(f_train[name], train.labels)
            probe.layer_name_ = name
            preds[name] = probe.predict_features(f_test[name]) if f_test is not None else np.zeros(0, dtype=np.int64)
            probes[name] = probe
    else:
        for name in names:
            probe = VProbe("nece", rank=rank, layer=name, progress=progress, **probe_kwargs).fit(model, train)
            preds[name] = probe.predict(test) if len(test) else np.zeros(0, dtype=np.int64)
            probes[name] = probe
    distance = np.asarray([int(d) for d in test.meta["distance"]], dtype=np.int64)
    frames = []
    for name in names:
        frames.append(
            pd.DataFrame(
                {
                    "layer": [hooks.layer_label(name)] * len(test),
                    "hook": name,
                    "distance": distance,
                    "label": test.labels,
                    "pred": preds[name],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["layer", "hook", "distance"])
    if frame["layer"].map(type).nunique() > 1:
        frame["layer"] = frame["layer"].astype(str)
    table = depth_table(frame)
    order = {name: i for i, name in enumerate(names)}
    table = table.sort_values(["hook", "distance"], key=lambda s: s.map(order) if s.name == "hook" else s)
    table = table.reset_index(drop=True)
    table["rank"] = rank
    table["n_train"] = len(train)
    return (table, probes) if return_probes else table
