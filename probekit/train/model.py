"""The model a run trains: a fresh one of a named shape, the weights of ``--init-from DIR``, or a checkpoint's.

:func:`model_config` applies the ``model`` section's overrides to a shape of ``models/<name>.yaml``;
:func:`init_model` loads and checks an HF folder to fine-tune (tokenizer, embedding rows, context);
:func:`grow_depth` deepens such a model by blocks that start as the identity (``model.grow_after``);
:func:`run_model` picks the model a run starts from.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from probekit.checkpoint import CheckpointError, load_model, resolve_checkpoint
from probekit.modeling import ModelConfig, build_model, load_model_config
from probekit.tokenizer import IGSMTokenizer, TokenizerFileError, default_tokenizer
from probekit.train.config import ConfigError, ModelSection

TIED_BY_DEFAULT = {"gpt2": True, "llama": False}
"""``model.tie_embeddings: null`` per architecture: GPT-2 ties its input embedding and output layer (the paper's
model is GPT-2 with rotary embeddings); Llama does not."""


def model_config(section: ModelSection) -> ModelConfig:
    """The named shape with the section's overrides (``model.n_layer=8`` ...); ``tie_embeddings`` None is
    :data:`TIED_BY_DEFAULT` of the architecture (a tied model's name ends in ``-tied``)."""
    try:
        base = load_model_config(section.name)
    except ValueError as err:
        raise ConfigError(f"model.name: {err}") from None
    changes = {k: getattr(section, k) for k in ("arch", "n_layer", "n_head", "head_dim", "rope_theta")}
    tie = section.tie_embeddings
    changes["tie_embeddings"] = TIED_BY_DEFAULT.get(section.arch or base.arch, False) if tie is None else tie
    changes = {k: v for k, v in changes.items() if v is not None and v != getattr(base, k)}
    if not changes:
        return base
    values = {**base.__dict__, **changes}
    values["name"] = f"{values['arch']}-{values['n_layer']}-{values['n_head']}"
    if values["head_dim"] != 64:
        values["name"] += f"-hd{values['head_dim']}"
    if values["tie_embeddings"]:
        values["name"] += "-tied"
    try:
        return ModelConfig(**values)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None


def model_from_folder(folder: str | os.PathLike):
    """An HF folder's causal LM in fp32 with SDPA, loaded strictly with its rotary buffers checked
    (:func:`probekit.checkpoint.load_model`); a folder it refuses is a :class:`ConfigError`."""
    try:
        return load_model(folder, dtype=torch.float32)
    except (FileNotFoundError, CheckpointError) as err:
        raise ConfigError(str(err)) from None


def tokenizer_of(folder: Path) -> tuple[IGSMTokenizer, bool]:
    """The folder's probekit tokenizer, or the default one (``False``) when it has none or a foreign one; a
    damaged ``tokenizer.json`` is a :class:`ConfigError` naming it, not a silent fallback."""
    try:
        return IGSMTokenizer.load(folder), True
    except TokenizerFileError as err:
        raise ConfigError(f"--init-from {folder}: {err}") from None
    except (FileNotFoundError, ValueError):  # none, or a readable tokenizer that is not an iGSM one
        return default_tokenizer(), False


def init_model(folder: str | os.PathLike, context: int):
    """Model, tokenizer and whether the tokenizer is the folder's own, of ``--init-from DIR``, checked against
    the probekit tokenizer and the context."""
    try:
        folder = resolve_checkpoint(folder)  # a checkpoint folder, its run's `latest` pointer or the run folder
    except CheckpointError as err:
        raise ConfigError(f"--init-from: {err}") from None
    if not folder.is_dir():
        raise ConfigError(f"--init-from {folder}: no such folder")
    model = model_from_folder(folder)
    tokenizer, own = tokenizer_of(folder)
    rows = model.get_input_embeddings().weight.shape[0]
    out = model.get_output_embeddings()
    out_rows = out.weight.shape[0] if out is not None else rows
    if min(rows, out_rows) < tokenizer.vocab_size:
        raise ConfigError(
            f"--init-from {folder}: its embedding has {rows} rows and its output layer {out_rows}, but the "
            f"{'folder' if own else 'probekit'} tokenizer has {tokenizer.vocab_size} ids; resize the embeddings "
            f"first (model.resize_token_embeddings({-(-tokenizer.vocab_size // 64) * 64}))"
        )
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and context > max_pos:
        raise ConfigError(f"--init-from {folder}: data.context={context} exceeds its max_position_embeddings={max_pos}")
    return model, tokenizer, own


OUTPUT_PROJECTIONS = {
    "gpt_neox": ("attention.dense", "mlp.dense_4h_to_h"),
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
}
"""Per ``model_type``: the linear layers that write a block's attention and MLP outputs into the residual
stream. Zeroing both makes a pre-norm block the identity."""


def grow_depth(model, after: Sequence[int]):
    """Deepen ``model`` in place: after each block index in ``after`` (0-based) insert a copy of that block whose
    output projections (:data:`OUTPUT_PROJECTIONS`) are zero. The inserted blocks are the identity at first, so
    the grown model computes exactly the logits of the original, and training starts where the original stopped;
    the copied attention and MLP weights give the new blocks the old block's features to start from (a zeroed
    output projection still receives gradients). Returns the model; raises :class:`ConfigError` for an
    architecture without an entry in :data:`OUTPUT_PROJECTIONS` or an index outside the model."""
    kind = model.config.model_type
    if kind not in OUTPUT_PROJECTIONS:
        raise ConfigError(f"model.grow_after: cannot grow a {kind!r} model (known: {', '.join(OUTPUT_PROJECTIONS)})")
    trunk = model.base_model
    blocks = trunk.layers
    outside = sorted(i for i in after if not 0 <= i < len(blocks))
    if outside:
        raise ConfigError(f"model.grow_after: block(s) {outside} outside the model's {len(blocks)} blocks (0-based)")
    grown = []
    for i, block in enumerate(blocks):
        grown.append(block)
        if i in after:
            twin = copy.deepcopy(block)
            for name in OUTPUT_PROJECTIONS[kind]:
                linear = twin.get_submodule(name)
                torch.nn.init.zeros_(linear.weight)
                if linear.bias is not None:
                    torch.nn.init.zeros_(linear.bias)
            grown.append(twin)
    for index, block in enumerate(grown):  # the KV cache of generation is indexed by each module's layer_idx
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    trunk.layers = torch.nn.ModuleList(grown)
    model.config.num_hidden_layers = len(grown)
    return model


def run_model(section: ModelSection, tokenizer: IGSMTokenizer, checkpoint: Path | None = None, initial=None):
    """The model a run starts from: the checkpoint's when resuming, else ``initial`` (the ``--init-from`` model,
    already loaded by :func:`init_model`), else a fresh model of the section's shape (``model.seed``)."""
    if checkpoint is not None:
        return model_from_folder(checkpoint)
    if initial is not None:
        return initial
    return build_model(model_config(section), tokenizer, seed=section.seed)
