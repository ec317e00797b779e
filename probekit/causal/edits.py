"""Running an HF model with its activations read or replaced at TransformerLens hook names.

The causal tools (activation patching, interventions along probe directions) need the whole forward with
an activation changed on the way, where :mod:`probekit.probe.hooks` only reads. Hook names are the same
TransformerLens 4 names the probes use, plus the two per-block outputs patching can target:

- ``embed.hook_out``: the token embeddings;
- ``blocks.{i}.hook_attn_out``: block ``i``'s attention output (before it joins the residual stream);
- ``blocks.{i}.hook_mlp_out``: block ``i``'s MLP output (before it joins the residual stream);
- ``blocks.{i}.hook_resid_post``: the residual stream after block ``i``;
- ``ln_final.hook_out``: the final norm's output (what the LM head reads).

Integers and the aliases of :func:`probekit.probe.hooks.layer_name` (``-1``, ``last_block``, ``ln_final``)
name residual points. Everything runs on the plain ``GPTNeoXForCausalLM`` / ``LlamaForCausalLM`` through
PyTorch forward hooks, so SDPA attention, any device and batching are kept.

An *edit* is a function ``(activation) -> activation`` on a ``(batch, seq, d)`` tensor; it may return a new
tensor (the model continues from it) and must keep the shape. :func:`run_with_edits` runs ``ids`` with edits
and returns the logits and the activations captured at ``capture`` names (captured *after* the edit at that
name, so a capture shows what the rest of the model saw).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from probekit.probe.hooks import EMBED, FINAL, layer_name, model_parts, n_layers

Edit = Callable[[torch.Tensor], torch.Tensor]

_BLOCK_OUT = re.compile(r"^blocks\.(\d+)\.hook_(resid_post|attn_out|mlp_out)$")


def hook_name(point: int | str, n_layer: int) -> str:
    """The full hook name of ``point``: a residual layer (int or alias, as the probes take) or any name
    listed in the module docstring. Raises ``ValueError`` on a name the model does not have."""
    if isinstance(point, str):
        m = _BLOCK_OUT.match(point)
        if m:
            if int(m.group(1)) >= n_layer:
                raise ValueError(f"{point!r}: the model has {n_layer} blocks (0..{n_layer - 1})")
            return point
    return layer_name(point, n_layer)


def _module_at(model, name: str) -> nn.Module:
    """The module whose forward output is the activation ``name``."""
    parts = model_parts(model)
    if name == EMBED:
        return parts.embed
    if name == FINAL:
        return parts.norm
    m = _BLOCK_OUT.match(name)
    if not m:
        raise ValueError(f"not a hook name probekit can edit: {name!r}")
    block = parts.layers[int(m.group(1))]
    if m.group(2) == "resid_post":
        return block
    child = "mlp" if m.group(2) == "mlp_out" else next((a for a in ("attention", "self_attn") if hasattr(block, a)), "")
    module = getattr(block, child, None)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(block).__name__}: cannot find the {m.group(2)[:-4]} module")
    return module


def _tensor_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_tensor(output, tensor: torch.Tensor):
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    if isinstance(output, list):
        return [tensor, *output[1:]]
    return tensor


@contextlib.contextmanager
def edited(model, edits: Mapping[str, Edit] | None = None, capture: Iterable[str] = (), into: dict | None = None):
    """Inside the block, forwards of ``model`` apply ``edits`` (hook name -> edit) and store the activations
    at the ``capture`` names in ``into`` (hook name -> tensor, after any edit at that name)."""
    n = n_layers(model)
    edits = {hook_name(k, n): f for k, f in (edits or {}).items()}
    capture = [hook_name(c, n) for c in capture]
    into = {} if into is None else into
    handles = []

    def hook(name):
        edit = edits.get(name)
        keep = name in capture

        def fn(module, args, output):
            act = _tensor_of(output)
            if edit is not None:
                new = edit(act)
                if new.shape != act.shape:
                    raise ValueError(f"an edit at {name} changed the shape {tuple(act.shape)} to {tuple(new.shape)}")
                act = new.to(act.dtype)
                output = _with_tensor(output, act)
            if keep:
                into[name] = act
            return output if edit is not None else None

        return fn

    try:
        for name in sorted(set(edits) | set(capture)):
            handles.append(_module_at(model, name).register_forward_hook(hook(name)))
        yield into
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_with_edits(
    model, ids: torch.Tensor, edits: Mapping[str, Edit] | None = None, capture: Iterable[str] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(logits, captured)``: the model's logits ``(batch, seq, vocab)`` on ``ids`` (right-padded or
    unpadded; no attention mask, the causal mask keeps padding out of real positions) with ``edits`` applied,
    and ``{name: (batch, seq, d)}`` at the ``capture`` names."""
    with edited(model, edits, capture) as captured:
        logits = model(input_ids=ids, use_cache=False).logits
    return logits, dict(captured)


def on_prefill(edit: Edit) -> Edit:
    """``edit`` restricted to forwards of more than one token: in KV-cached generation, the prompt's prefill (the
    one-token decoding steps pass unchanged)."""

    def prefill_only(act: torch.Tensor) -> torch.Tensor:
        return edit(act) if act.shape[-2] > 1 else act

    return prefill_only


def replace_at(source: torch.Tensor, positions: torch.Tensor) -> Edit:
    """An edit that takes ``source``'s activation where ``positions`` (bool, ``(batch, seq)`` or ``(seq,)``)
    is true and keeps the running activation elsewhere: activation patching."""

    def edit(act: torch.Tensor) -> torch.Tensor:
        mask = positions.to(act.device)
        if mask.dim() == 1:
            mask = mask.unsqueeze(0)
        return torch.where(mask.unsqueeze(-1), source.to(act.device, act.dtype), act)

    return edit
