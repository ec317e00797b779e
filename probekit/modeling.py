"""Model shapes and Hugging Face model builders (checkpoint folders: :mod:`probekit.checkpoint`).

Two architectures, both standard Hugging Face classes so that ``AutoModelForCausalLM`` and TransformerLens'
``TransformerBridge.boot_transformers`` load a checkpoint offline:

- ``gpt2``: the paper's "GPT2 with rotary embeddings" = ``GPTNeoXForCausalLM`` with a sequential residual
  (``use_parallel_residual=False``), rotary on every head dimension (``partial_rotary_factor=1.0``),
  LayerNorm, GELU, MLP 4x;
- ``llama``: ``LlamaForCausalLM`` (RMSNorm, SwiGLU with an MLP width of 8/3 d rounded to 64, so that a
  LLaMA of the same depth and width has about the same parameter count).

GPT2-l-h has l layers, h heads of dimension 64, hidden size 64 h. Shapes live in ``models/<name>.yaml``.
Saving and loading them as checkpoint folders is :mod:`probekit.checkpoint`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from probekit.tokenizer import IGSMTokenizer

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
ARCHS = ("gpt2", "llama")
VOCAB_MULTIPLE = 64  # embedding rows are padded to a multiple of 64 (faster matmuls); ids >= vocab never occur


@dataclass(frozen=True)
class ModelConfig:
    """A transformer shape. ``context`` is the largest position the model supports."""

    name: str
    arch: str = "gpt2"
    n_layer: int = 12
    n_head: int = 12
    head_dim: int = 64
    context: int = 2048
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    """Share the input embedding matrix with the output layer (as GPT-2 does; default: untied)."""

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"model {self.name!r}: arch must be one of {ARCHS}, not {self.arch!r}")
        for key in ("n_layer", "n_head", "head_dim", "context"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model {self.name!r}: {key} must be a positive integer, not {value!r}")

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim

    @property
    def d_mlp(self) -> int:
        if self.arch == "gpt2":
            return 4 * self.d_model
        return -(-8 * self.d_model // 3 // 64) * 64

    def non_embedding_params(self) -> int:
        """Parameters outside the embeddings (attention + MLP + norms), as in the paper's size columns."""
        d, f = self.d_model, self.d_mlp
        mlp = 2 * d * f + f + d if self.arch == "gpt2" else 3 * d * f
        attn = 4 * d * d + (4 * d if self.arch == "gpt2" else 0)
        norms = (4 if self.arch == "gpt2" else 2) * d
        return self.n_layer * (attn + mlp + norms)


def load_model_config(name_or_path: str | os.PathLike) -> ModelConfig:
    """A shape from ``models/<name>.yaml`` (or any YAML path); unknown keys are refused by name."""
    path = Path(name_or_path)
    if not path.suffix:
        path = MODELS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
        raise ValueError(f"no model config {name_or_path!r}; known: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    data.setdefault("name", path.stem)
    return ModelConfig(**data)


def padded_vocab(vocab_size: int) -> int:
    return -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def hf_config(cfg: ModelConfig, tokenizer: IGSMTokenizer):
    """The ``transformers`` config for a shape and a tokenizer."""
    from transformers import GPTNeoXConfig, LlamaConfig

    common: dict[str, Any] = dict(
        vocab_size=padded_vocab(tokenizer.vocab_size),
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.d_mlp,
        max_position_embeddings=cfg.context,
        bos_token_id=tokenizer.special("[PROBLEM]"),
        eos_token_id=tokenizer.special("[EOS]"),
        pad_token_id=tokenizer.special("[PAD]"),
        tie_word_embeddings=cfg.tie_embeddings,
    )
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    config: GPTNeoXConfig | LlamaConfig
    if cfg.arch == "gpt2":
        config = GPTNeoXConfig(
            **common,
            hidden_act="gelu",
            use_parallel_residual=False,
            rope_parameters={**rope, "partial_rotary_factor": 1.0},
            attention_dropout=0.0,
            hidden_dropout=0.0,
        )
        rope_kept = config.rope_parameters
        if rope_kept is None or rope_kept.get("partial_rotary_factor") != 1.0:
            raise RuntimeError("transformers did not keep partial_rotary_factor=1.0 (full rotary)")
    else:
        config = LlamaConfig(**common, num_key_value_heads=cfg.n_head, hidden_act="silu", rope_parameters=rope)
    config._attn_implementation = "sdpa"
    return config


def build_model(cfg: ModelConfig, tokenizer: IGSMTokenizer, seed: int = 0):
    """A randomly initialised model of shape ``cfg`` (deterministic for a seed)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(hf_config(cfg, tokenizer), attn_implementation="sdpa")


def git_revision() -> str | None:
    """The package's git revision (with ``-dirty`` for uncommitted changes), or None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
