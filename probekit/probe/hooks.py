"""Reading residual streams of probekit models, with TransformerLens names.

Hook names follow TransformerLens 4 (``TransformerBridge``):

- ``embed.hook_out``: the token embeddings (the input of block 0; GPT-NeoX's embedding dropout is the
  identity in eval mode);
- ``blocks.{i}.hook_resid_post``: the residual stream after block ``i`` (0-based);
- ``ln_final.hook_out``: the last block's output after the final norm (what the LM head reads).

An integer layer means a block: ``layer=i`` is ``blocks.{i}.hook_resid_post`` and negative integers count
from the end, so ``layer=-1`` is the *last block's* resid_post (before the final norm; also named
``last_block``). The probes read :data:`READOUT` = ``ln_final.hook_out`` by default: the paper's "last hidden
state" is the one the LM head reads, after the final norm. :func:`readout_text` says in words what a hook is
(figure captions); :func:`readout_depth` orders hooks from the embeddings to ``ln_final``.

Two back-ends give the same numbers (``tests/integration/test_probe.py`` checks allclose at every name):

- **HF** (:class:`HiddenReader`, :func:`hidden_states`): the plain ``GPTNeoXForCausalLM`` /
  ``LlamaForCausalLM``. To read block ``i`` the reader runs a *truncated view* of the model's base module
  (the same parameter tensors, its ``layers`` list cut after block ``i``, the final norm replaced by the
  identity unless ``ln_final.hook_out`` is read), through the model's own ``forward`` (rotary, causal mask
  and all), so the forward and the backward stop at the read layer. It keeps the model's attention
  implementation (SDPA).
- **bridge** (:class:`BridgeReader`, :func:`bridge_hidden_states`): a TransformerLens ``TransformerBridge``
  with ``run_with_hooks(..., stop_at_layer=i + 1)``. The bridge switches the wrapped model to eager attention,
  so :func:`make_bridge` wraps a deep copy and never changes the caller's model.

Probe training uses the HF back-end. On CPU the bridge is not much slower (1.0-1.4x for forward + backward to
the embedding update, ``benchmarks/bench_probe.py``; figures in ``benchmarks/RESULTS.md``), but the HF path
keeps SDPA (flash) attention on GPU where the bridge forces eager attention (T x T score matrices per head),
works with ``torch.compile``, and needs no TransformerLens on the GPU machine. The bridge stays available
(``VProbe(backend="bridge")``) and the tests prove both give the same hidden states.

The embedding update of the V-probe enters as ``embed_delta``: a tensor ``(batch, seq, d)`` added to the
token embeddings (HF: ``inputs_embeds = E[ids] + delta``; bridge: a hook on ``embed.hook_out``), which is
exactly running the model with the embedding matrix ``E + U V^T``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from probekit.probe.readout import (  # noqa: F401  (re-exported: hooks.READOUT, hooks.readout_text, ...)
    EMBED,
    FINAL,
    LAST_BLOCK,
    READOUT,
    readout_depth,
    readout_text,
    resid_name,
)
from probekit.probe.readout import RESID as _RESID

_ALIASES = {"embed": EMBED, "ln_final": FINAL, "final": FINAL}


def n_layers(model) -> int:
    """Number of transformer blocks of an HF model (or a ``TransformerBridge``)."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "n_layers"):
        return int(cfg.n_layers)
    return int(model.config.num_hidden_layers)


def layer_name(layer: int | str, n_layer: int) -> str:
    """The hook name of ``layer``: an int block index (negative from the end) or a hook name / alias."""
    if layer == LAST_BLOCK:
        layer = -1
    if isinstance(layer, str):
        if layer.lstrip("-").isdigit():
            layer = int(layer)
        else:
            name = _ALIASES.get(layer, layer)
            m = _RESID.match(name)
            if name in (EMBED, FINAL) or (m and int(m.group(1)) < n_layer):
                return name
            raise ValueError(
                f"unknown layer {layer!r}: use a block index (0..{n_layer - 1}, negative from the end), "
                f"'{EMBED}', 'blocks.<i>.hook_resid_post', '{LAST_BLOCK}' or '{FINAL}'"
            )
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise TypeError(f"layer must be an int or a hook name, not {layer!r}")
    index = layer + n_layer if layer < 0 else layer
    if not 0 <= index < n_layer:
        raise ValueError(f"layer {layer} out of range for a model with {n_layer} blocks")
    return resid_name(index)


def layer_label(name: str) -> int | str:
    """The ``layer`` column of result tables: the block index for a resid_post, else the hook name."""
    m = _RESID.match(name)
    return int(m.group(1)) if m else name


def stop_block(name: str, n_layer: int) -> int:
    """How many blocks must run to read ``name`` (0 for the embeddings)."""
    if name == EMBED:
        return 0
    if name == FINAL:
        return n_layer
    m = _RESID.match(name)
    if not m:
        raise ValueError(f"not a residual hook name: {name!r}")
    return int(m.group(1)) + 1


# ---------------------------------------------------------------------------- HF back-end
@dataclass
class ModelParts:
    base: nn.Module  # GPTNeoXModel / LlamaModel
    embed: nn.Embedding
    layers_attr: str
    norm_attr: str

    @property
    def layers(self) -> nn.ModuleList:
        return getattr(self.base, self.layers_attr)

    @property
    def norm(self) -> nn.Module:
        return getattr(self.base, self.norm_attr)


def model_parts(model) -> ModelParts:
    """The base module, the input embedding, the block list and the final norm of an HF causal LM."""
    base = getattr(model, "base_model", model)
    layers_attr = next((a for a in ("layers", "h") if isinstance(getattr(base, a, None), nn.ModuleList)), None)
    norm_attr = next((a for a in ("final_layer_norm", "norm", "ln_f") if hasattr(base, a)), None)
    if layers_attr is None or norm_attr is None:
        raise TypeError(f"{type(model).__name__}: cannot find the block list and the final norm")
    return ModelParts(base, model.get_input_embeddings(), layers_attr, norm_attr)


def _truncated_base(parts: ModelParts, n_blocks: int, keep_norm: bool) -> nn.Module:
    """A view of the base module with only the first ``n_blocks`` blocks (same parameter tensors)."""
    view = copy.copy(parts.base)
    view._modules = dict(parts.base._modules)  # copy.copy shares the dict; replace entries in a copy only
    view._modules[parts.layers_attr] = nn.ModuleList(list(parts.layers)[:n_blocks])
    if not keep_norm:
        view._modules[parts.norm_attr] = nn.Identity()
    return view


class HiddenReader:
    """``reader(ids, embed_delta=None, allowed=None, position_ids=None) -> (batch, seq, d)``: the hidden state at
    ``name``, differentiable.

    Runs only the blocks up to the read layer. Without ``allowed`` ``ids`` must be right-padded (or unpadded): no
    attention mask is passed, so the causal mask alone keeps padding out of every real position. ``allowed`` and
    ``position_ids`` replace the causal mask and the positions (packed rows, as in :func:`hidden_states`).
    """

    def __init__(self, model, name: str):
        self.model = model
        self.parts = model_parts(model)
        self.name = name
        self.n_blocks = stop_block(name, len(self.parts.layers))
        self.view = None if name == EMBED else _truncated_base(self.parts, self.n_blocks, keep_norm=name == FINAL)

    def embeddings(self, ids: torch.Tensor, embed_delta: torch.Tensor | None = None) -> torch.Tensor:
        x = self.parts.embed(ids)
        return x if embed_delta is None else x + embed_delta.to(x.dtype)

    def __call__(
        self,
        ids: torch.Tensor,
        embed_delta: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.embeddings(ids, embed_delta)
        if self.view is None:
            return x
        mask = None if allowed is None else attention_bias(allowed, self.model)
        return self.view(
            inputs_embeds=x, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state


def _output_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def attention_bias(allowed: torch.Tensor, model) -> torch.Tensor:
    """A boolean ``(B, 1, L, L)`` mask (True: may attend) in the form the model's attention takes: as is for
    sdpa, additive (0 or the float32 minimum) for eager attention."""
    if model.config._attn_implementation == "eager":
        return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(torch.float32).min
        )
    return allowed


@torch.no_grad()
def hidden_states(
    model,
    ids: torch.Tensor,
    names,
    embed_delta: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """HF back-end: ``{name: (batch, seq, d)}`` for several hook names in one forward (no gradients).

    Forward hooks on the blocks and the final norm; the forward runs only up to the deepest name. ``allowed``
    (a boolean ``(B, 1, L, L)`` mask, True: the query may attend to the key) and ``position_ids`` replace the
    causal mask and the positions 0..L-1 (packed rows, :mod:`probekit.probe.packing`).
    """
    parts = model_parts(model)
    n = len(parts.layers)
    names = list(names)
    deepest = max(stop_block(name, n) for name in names)
    view = _truncated_base(parts, deepest, keep_norm=FINAL in names)
    x = parts.embed(ids)
    if embed_delta is not None:
        x = x + embed_delta.to(x.dtype)
    out: dict[str, torch.Tensor] = {}
    if EMBED in names:
        out[EMBED] = x
    handles = []
    try:
        for name in names:
            if name in (EMBED, FINAL):
                continue
            i = stop_block(name, n) - 1
            handles.append(
                parts.layers[i].register_forward_hook(
                    lambda mod, args, output, name=name: out.__setitem__(name, _output_tensor(output))
                )
            )
        if FINAL in names:
            norm = view._modules[parts.norm_attr]
            if norm is None:  # model_parts found the attribute; a None there is not a norm layer
                raise ValueError(f"the model's final norm {parts.norm_attr!r} is None")
            handles.append(
                norm.register_forward_hook(lambda mod, args, output: out.__setitem__(FINAL, _output_tensor(output)))
            )
        if deepest:
            mask = None if allowed is None else attention_bias(allowed, model)
            view(inputs_embeds=x, attention_mask=mask, position_ids=position_ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {name: out[name] for name in names}


# ---------------------------------------------------------------------------- bridge back-end
def make_bridge(model, tokenizer=None):
    """A TransformerLens ``TransformerBridge`` around a deep copy of an HF model (offline).

    The copy matters: booting a bridge switches the wrapped model to eager attention in place.
    """
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from probekit.tokenizer import default_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    hf_model = copy.deepcopy(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        hf_tok = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        bridge = TransformerBridge.boot_transformers(
            "probekit-local", hf_model=hf_model, tokenizer=hf_tok, device=str(next(model.parameters()).device)
        )
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    return bridge


def _bridge_run(bridge, ids, names, embed_delta):
    out: dict[str, torch.Tensor] = {}
    hooks = []
    if embed_delta is not None:
        hooks.append((EMBED, lambda act, hook: act + embed_delta.to(act.dtype)))
    for name in names:
        hooks.append((name, lambda act, hook, name=name: out.__setitem__(name, act)))
    n = n_layers(bridge)
    deepest = max(stop_block(name, n) for name in names)
    stop = None if FINAL in names or deepest >= n else max(deepest, 1)
    bridge.run_with_hooks(ids, fwd_hooks=hooks, stop_at_layer=stop, return_type=None if stop is None else "logits")
    return {name: out[name] for name in names}


def bridge_hidden_states(bridge, ids: torch.Tensor, names, embed_delta: torch.Tensor | None = None):
    """Bridge back-end of :func:`hidden_states` (no gradients)."""
    with torch.no_grad():
        return _bridge_run(bridge, ids, list(names), embed_delta)


class BridgeReader:
    """Bridge back-end of :class:`HiddenReader` (differentiable; stops the forward at the read layer)."""

    def __init__(self, bridge, name: str):
        self.bridge = bridge
        self.name = name

    def __call__(self, ids: torch.Tensor, embed_delta: torch.Tensor | None = None) -> torch.Tensor:
        return _bridge_run(self.bridge, ids, [self.name], embed_delta)[self.name]


def make_reader(model, name: str, backend: str = "hf"):
    """A differentiable reader for one hook name (``backend``: ``"hf"`` or ``"bridge"``)."""
    if backend == "hf":
        return HiddenReader(model, name)
    if backend == "bridge":
        bridge = model if hasattr(model, "run_with_hooks") else make_bridge(model)
        return BridgeReader(bridge, name)
    raise ValueError(f"backend must be 'hf' or 'bridge', not {backend!r}")
