"""Per-layer probing and the random-init baseline.

:func:`probe_layers` fits one probe per layer. ``rank=0`` takes the cheap path: one frozen forward over the
train and the test examples records the [END] hidden state of *every* requested layer at once
(:func:`collect_features`), then each layer's linear head is fitted from that cache
(:meth:`VProbe.fit_features`). ``rank > 0`` fits one full V-probe per layer; its forward and backward run only
the blocks up to that layer.

:func:`random_init_like` is the paper's control: the same architecture, randomly initialised, never trained.
"""

from __future__ import annotations

import numpy as np
import torch

from probekit.probe import hooks
from probekit.probe.data import ProbeData
from probekit.probe.vprobe import VProbe, _pad_id, pad_batch

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
def collect_features(model, data: ProbeData, names, batch_size: int | None = None, amp: str | None = "auto",
                     progress=None) -> dict[str, torch.Tensor]:
    """``{hook name: (N, d) float32 CPU tensor}``: the [END] hidden states of the unmodified model."""
    device = next(model.parameters()).device
    amp_dtype = torch.bfloat16 if (amp == "auto" and device.type == "cuda") or amp in ("bf16", True) else None
    bs = batch_size or (256 if device.type == "cuda" else 64)
    order = np.argsort(data.lengths, kind="stable")
    d = model.config.hidden_size
    out = {name: torch.empty(len(data), d, dtype=torch.float32) for name in names}
    pad_id = _pad_id(model)
    model.eval()
    for k in range(0, len(order), bs):
        chunk = order[k : k + bs]
        ids, end = pad_batch([data.ids[i] for i in chunk], pad_id, device=device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            states = hooks.hidden_states(model, ids, names)
        rows = torch.arange(len(chunk), device=device)
        index = torch.as_tensor(chunk)
        for name in names:
            out[name][index] = states[name][rows, end].float().cpu()
        if progress is not None:
            progress(len(chunk))
    return out


def probe_layers(model, train: ProbeData, test: ProbeData, task: str, layers="all", rank: int = 0,
                 model_label: str | None = None, return_probes: bool = False, progress: bool = False, **probe_kwargs):
    """Fit a ``task`` probe at each layer on ``train``, score on ``test``: a DataFrame (one row per layer:
    layer, hook, task, rank, accuracy, accuracy_pos, accuracy_neg, majority, n, n_pos, accuracy_unnecessary,
    n_unnecessary[, model]).

    ``probe_kwargs`` go to :class:`VProbe` (steps, lr, batch_size, seed, device, ...). With
    ``return_probes=True`` returns ``(frame, {hook name: VProbe})``.
    """
    import pandas as pd

    train, test = train.task(task), test.task(task)
    names = resolve_layers(layers, hooks.n_layers(model))
    if probe_kwargs.get("device"):
        model.to(probe_kwargs["device"])
    rows, probes = [], {}
    if rank == 0:
        amp = probe_kwargs.get("amp", "auto")
        f_train = collect_features(model, train, names, probe_kwargs.get("eval_batch_size"), amp)
        f_test = collect_features(model, test, names, probe_kwargs.get("eval_batch_size"), amp)
        for name in names:
            probe = VProbe(task, rank=0, layer=name, progress=progress, **probe_kwargs)
            probe.fit_features(f_train[name], train.labels)
            probe.layer_name_ = name
            rows.append(probe.score_predictions(probe.predict_features(f_test[name]), test.labels, test.meta.get("necessary")))
            probes[name] = probe
    else:
        for name in names:
            probe = VProbe(task, rank=rank, layer=name, progress=progress, **probe_kwargs).fit(model, train)
            rows.append(probe.score(test))
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
