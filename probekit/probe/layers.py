"""Per-layer probing and the random-init baseline.

:func:`probe_layers` fits one probe per layer. ``rank=0`` takes the cheap path: one frozen forward over the
train and the test examples records the [END] hidden state of *every* requested layer at once
(:func:`collect_features`; a problem's examples packed into one row, :mod:`probekit.probe.packing`), then
each layer's linear head is fitted from that cache (:meth:`VProbe.fit_features`). ``rank > 0`` fits one full
V-probe per layer; its forward and backward run only the blocks up to that layer.

Every row also carries (:mod:`probekit.probe.stats`; columns in :mod:`probekit.probe.vprobe`):

- bootstrap 95% intervals over test *problems* (``bootstrap`` resamples, default 1000, seeded by the probe
  seed): ``ci_low`` / ``ci_high`` and the same for the positive, negative, unnecessary and control accuracies;
- with ``controls=True`` (default) the **control task** of Hewitt and Liang (2019): a second probe with the
  same rank, layer, steps and seed, trained on the train examples and scored on the test examples with labels
  assigned at random per control key (the counted item or category word of A; ``dep``: with the category of
  B's; :func:`probekit.probe.stats.control_keys`) from the real task's train class frequencies
  (:func:`control_task`; seeded by the probe seed), scored only on the test examples whose key occurs in the
  training data (:func:`control_seen`; with :class:`~probekit.probe.data.FreshData`, the keys of the first
  epoch: a subset of those the control probe saw). For ``rank=0`` it is fitted on the same cached features. Columns
  ``control_accuracy``, ``control_majority``, ``control_seen`` (share of test examples with a seen key),
  ``n_control`` and ``selectivity`` = accuracy - control_accuracy on those examples;
- with ``mdl=True`` the **online code length** of the train labels given the layer's features (Voita and
  Titov 2020; :func:`online_code_length`): ``mdl_bits``, ``uniform_bits``, ``compression`` = uniform / mdl,
  and for the control labels ``control_mdl_bits`` / ``control_compression`` (NaN columns when off). For speed
  the code is always computed with *rank-0* probes on the frozen features of the unmodified model (computed
  once per layer, whatever ``rank`` is): it measures what a linear probe reads from the representation.

:func:`random_init_like` is the paper's control: the same architecture, randomly initialised, never trained.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from probekit.batching import slot_budget_batches
from probekit.probe import hooks, packing, stats
from probekit.probe.data import FreshData, ProbeData, n_classes
from probekit.probe.vprobe import VProbe, _pad_id

RANDOM_INIT_SEED = 0x5EED_0000  # offset of the random-init control's seeds


def resolve_layers(layers, n_layer: int) -> list[str]:
    """``"all"`` (every block's resid_post, 0..n-1), one layer, a comma list or a list -> hook names."""
    if isinstance(layers, str):
        if layers == "all":
            return [hooks.resid_name(i) for i in range(n_layer)]
        layers = [x.strip() for x in layers.split(",") if x.strip()]
    elif isinstance(layers, int):
        layers = [layers]
    names = [hooks.layer_name(x, n_layer) for x in layers]
    return list(dict.fromkeys(names))


@torch.no_grad()
def collect_features(
    model, data: ProbeData | FreshData, names, batch_size: int | None = None, amp: str | None = "auto", progress=None
) -> dict[str, torch.Tensor]:
    """``{hook name: (N, d) float32 CPU tensor}``: the [END] hidden states of the unmodified model.

    The examples run packed, one row per problem (:mod:`probekit.probe.packing`: each example's own hidden
    states, a fraction of the tokens); a batch holds about ``batch_size`` (CPU 64, CUDA 256) times 256 tokens.
    ``progress(n)`` is called with the examples read by each batch."""
    device = next(model.parameters()).device
    amp_dtype = torch.bfloat16 if (amp == "auto" and device.type == "cuda") or amp in ("bf16", True) else None
    budget = (batch_size or (256 if device.type == "cuda" else 64)) * 256
    rows = sorted(packing.pack_rows(data.ids), key=len)
    d = model.config.hidden_size
    out = {name: torch.empty(len(data), d, dtype=torch.float32) for name in names}
    pad_id = _pad_id(model)
    model.eval()
    for span in slot_budget_batches([len(row) for row in rows], budget):
        batch = rows[span.start : span.stop]
        packed = packing.packed_batch(batch, pad_id, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            states = hooks.hidden_states(
                model, packed.ids, names, allowed=packed.allowed, position_ids=packed.positions
            )
        index = packed.example.cpu()
        for name in names:
            out[name][index] = states[name][packed.at_row, packed.at_col].float().cpu()
        if progress is not None:
            progress(len(index))
    return out


def control_seen(train: ProbeData | FreshData, test: ProbeData, task: str) -> np.ndarray:
    """Which ``task`` test examples have a control key that occurs in ``train`` (where the control task can be
    memorised, so where it is scored)."""
    keys = stats.control_keys(train.task(task).meta, task)
    return stats.seen_keys(keys, stats.control_keys(test.task(task).meta, task))


def control_train_data(train: ProbeData | FreshData, labels: np.ndarray, task: str, seed: int = 0):
    """The control task's training data: ``train`` (one task's examples) with the control ``labels``
    (:func:`control_task`); for :class:`FreshData`, every epoch relabelled by the same key -> label map (the
    class frequencies of the first epoch's real labels)."""
    if isinstance(train, FreshData):
        prior = stats.label_prior(train.labels, n_classes(task))
        return train.relabel(lambda d: stats.control_labels(stats.control_keys(d.meta, task), prior, seed, task))
    return ProbeData(train.ids, labels, train.meta, dict(train.n_too_long), train.max_len)


MDL_COLUMNS = ("mdl_bits", "uniform_bits", "compression", "control_mdl_bits", "control_compression")


def control_task(
    train: ProbeData | FreshData, test: ProbeData, task: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Control-task labels ``(train labels, test labels)`` of ``task`` (module doc): one random label per
    control key (:func:`stats.control_keys`), drawn from the class frequencies of ``train``'s real labels
    through a fixed map seeded by ``seed``, so a key has the same control label in train and test."""
    train, test = train.task(task), test.task(task)
    prior = stats.label_prior(train.labels, n_classes(task))
    return (
        stats.control_labels(stats.control_keys(train.meta, task), prior, seed, task),
        stats.control_labels(stats.control_keys(test.meta, task), prior, seed, task),
    )


def online_code_length(
    features: torch.Tensor, labels, task: str, groups=None, fractions=stats.MDL_FRACTIONS, **probe_kwargs
) -> dict:
    """Online code length (Voita and Titov 2020) of ``labels`` given rank-0 ``features`` ``(N, d)``.

    The examples are ordered with :func:`stats.group_order` (problems in a random order seeded by the probe
    seed, each problem's examples together), cut at ``fractions`` of N (:func:`stats.mdl_blocks`); the first
    block costs log2 K bits per label, every later block -log2 p(y | x) under a fresh rank-0 :class:`VProbe`
    (``probe_kwargs``: steps, lr, batch_size, seed, ...) trained on all examples before it. The fixed input
    standardisation is measured on all N feature rows (they carry no label). Returns ``{"mdl_bits",
    "uniform_bits", "compression", "blocks"}`` (``blocks``: the block ends)."""
    labels = np.asarray(labels, dtype=np.int64)
    n, k = len(labels), n_classes(task)
    if len(features) != n:
        raise ValueError(f"{len(features)} feature rows but {n} labels")
    seed = int(probe_kwargs.get("seed", 0))
    groups = np.arange(n) if groups is None else np.asarray(groups)
    order = stats.group_order(groups, seed)
    ends = stats.mdl_blocks(n, fractions)
    feats, y = features[torch.as_tensor(order)], labels[order]
    kwargs = {key: v for key, v in probe_kwargs.items() if key not in ("progress", "layer", "rank")}
    bits = stats.uniform_bits(ends[0], k)
    for start, stop in itertools.pairwise(ends):
        probe = VProbe(task, rank=0, **kwargs).fit_features(feats[:start], y[:start], standardize_on=feats)
        bits += stats.code_length_bits(probe.predict_log_proba_features(feats[start:stop]), y[start:stop])
    uniform = stats.uniform_bits(n, k)
    return {
        "mdl_bits": bits,
        "uniform_bits": uniform,
        "compression": uniform / bits if bits > 0 else np.inf,
        "blocks": ends,
    }


def probe_layers(
    model,
    train: ProbeData | FreshData,
    test: ProbeData,
    task: str,
    layers="all",
    rank: int = 0,
    model_label: str | None = None,
    return_probes: bool = False,
    progress: bool | str = False,
    controls: bool = True,
    bootstrap: int = stats.N_BOOT,
    mdl: bool = False,
    **probe_kwargs,
):
    """Fit a ``task`` probe at each layer on ``train``, score on ``test``: a DataFrame, one row per layer:
    layer, hook, task, rank, accuracy, ci_low, ci_high, accuracy_pos (+ interval), accuracy_neg (+ interval),
    majority, control_accuracy (+ interval), control_majority, control_seen, n_control, selectivity (+ interval),
    n, n_pos,
    n_problems, accuracy_unnecessary (+ interval), n_unnecessary, bootstrap, mdl_bits, uniform_bits,
    compression, control_mdl_bits, control_compression[, model] (module doc).

    ``controls``: also fit the control-task probe (:func:`control_task`); off: its columns are NaN.
    ``bootstrap``: resamples of the intervals over test problems (0: none). ``mdl``: add the online code
    length columns (rank-0 probes on frozen features, whatever ``rank``). ``probe_kwargs`` go to
    :class:`VProbe` (steps, lr, batch_size, seed, device, ...). With ``return_probes=True`` returns
    ``(frame, {hook name: VProbe})`` (the real-task probes).
    """
    import pandas as pd

    train, test = train.task(task), test.task(task)
    names = resolve_layers(layers, hooks.n_layers(model))
    if probe_kwargs.get("device"):
        model.to(probe_kwargs["device"])
    seed = int(probe_kwargs.get("seed", 0))
    groups = stats.problem_groups(test.meta, len(test))
    necessary = test.meta.get("necessary")
    if controls:
        c_train, c_test = control_task(train, test, task, seed)
        c_seen = control_seen(train, test, task)
        c_train_data = control_train_data(train, c_train, task, seed)
    rows, probes = [], {}
    amp = probe_kwargs.get("amp", "auto")
    # frozen [END] features by hook name, collected only where used (rank 0 probes, MDL)
    f_train: dict[str, torch.Tensor] = {}
    f_test: dict[str, torch.Tensor] = {}
    if rank == 0 or mdl:
        f_train = collect_features(model, train, names, probe_kwargs.get("eval_batch_size"), amp)
    if rank == 0:
        f_test = collect_features(model, test, names, probe_kwargs.get("eval_batch_size"), amp)
    c_progress = f"{progress} control" if isinstance(progress, str) else progress
    for name in names:
        control: dict[str, Any] = {}
        if rank == 0:
            probe = VProbe(task, rank=0, layer=name, progress=progress, **probe_kwargs)
            probe.fit_features(f_train[name], train.labels)
            pred = probe.predict_features(f_test[name])
            if controls:
                c_probe = VProbe(task, rank=0, layer=name, progress=c_progress, **probe_kwargs)
                c_probe.fit_features(f_train[name], c_train)
                control = {"control_pred": c_probe.predict_features(f_test[name])}
        else:
            probe = VProbe(task, rank=rank, layer=name, progress=progress, **probe_kwargs).fit(model, train)
            pred = probe.predict(test)
            if controls:
                c_probe = VProbe(task, rank=rank, layer=name, progress=c_progress, **probe_kwargs)
                c_probe.fit(model, c_train_data)
                control = {"control_pred": c_probe.predict(test)}
        if controls:
            control.update(control_labels=c_test, control_majority_class=c_probe.majority_class_, control_mask=c_seen)
        row = probe.score_predictions(pred, test.labels, necessary, groups=groups, bootstrap=bootstrap, **control)
        code = dict.fromkeys(MDL_COLUMNS, np.nan)
        if mdl:
            train_groups = stats.problem_groups(train.meta, len(train))
            mdl_kwargs = {k: v for k, v in probe_kwargs.items() if k != "compile"}
            real = online_code_length(f_train[name], train.labels, task, train_groups, **mdl_kwargs)
            code.update(mdl_bits=real["mdl_bits"], uniform_bits=real["uniform_bits"], compression=real["compression"])
            if controls:
                fake = online_code_length(f_train[name], c_train, task, train_groups, **mdl_kwargs)
                code.update(control_mdl_bits=fake["mdl_bits"], control_compression=fake["compression"])
        for key, value in code.items():
            row[key] = value
        rows.append(row)
        probes[name] = probe
    frame = pd.concat(rows, ignore_index=True)
    frame.insert(2, "hook", names)
    if model_label is not None:
        frame.insert(0, "model", model_label)
    return (frame, probes) if return_probes else frame


def random_init_like(model, seed: int = 0):
    """The same architecture as ``model``, randomly initialised (HF init), in eval mode, same device and
    dtype: the paper's random-model control. The init RNG is seeded with ``RANDOM_INIT_SEED + seed``, so the
    control never coincides with ``build_model(cfg, tok, seed)`` (a never-trained checkpoint made that way
    would otherwise be its own control)."""
    from transformers import AutoModelForCausalLM

    param = next(model.parameters())
    config = model.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED + seed)
        fresh = AutoModelForCausalLM.from_config(config, attn_implementation=config._attn_implementation)
    return fresh.to(device=param.device, dtype=param.dtype).eval()
