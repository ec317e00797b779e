"""Model shapes, Hugging Face model builders and probekit checkpoints.

Two architectures, both standard Hugging Face classes so that ``AutoModelForCausalLM`` and TransformerLens'
``TransformerBridge.boot_transformers`` load a checkpoint offline:

- ``gpt2``: the paper's "GPT2 with rotary embeddings" = ``GPTNeoXForCausalLM`` with a sequential residual
  (``use_parallel_residual=False``), rotary on every head dimension (``partial_rotary_factor=1.0``),
  LayerNorm, GELU, MLP 4x;
- ``llama``: ``LlamaForCausalLM`` (RMSNorm, SwiGLU with an MLP width of 8/3 d rounded to 64, so that a
  LLaMA of the same depth and width has about the same parameter count).

GPT2-l-h has l layers, h heads of dimension 64, hidden size 64 h. Shapes live in ``models/<name>.yaml``.
A checkpoint is a plain HF folder: ``config.json``, ``model.safetensors``, the tokenizer files and
``probekit.json`` (training config, data preset, step, git revision: the run's provenance, and a
``fingerprint`` of the saved tensors and tokenizer that ``probekit inspect`` checks a loaded model against).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import yaml

from probekit.records import write_atomic
from probekit.tokenizer import IGSMTokenizer

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
PROVENANCE_FILE = "probekit.json"
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

    common = dict(
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
    if cfg.arch == "gpt2":
        config = GPTNeoXConfig(
            **common,
            hidden_act="gelu",
            use_parallel_residual=False,
            rope_parameters={**rope, "partial_rotary_factor": 1.0},
            attention_dropout=0.0,
            hidden_dropout=0.0,
        )
        if config.rope_parameters.get("partial_rotary_factor") != 1.0:
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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def weight_fingerprint(model) -> dict[str, list[float]]:
    """Per-tensor checksums ``{name: [sum, sum of squares, ramp-weighted sum]}`` (float64) of every tensor of
    ``model.state_dict()`` and every buffer, non-persistent ones (the rotary ``inv_freq``) included.

    The ramp weights run linearly from -1 to 1 over the flattened tensor, so the third number also changes when
    values move inside a tensor; two blocks swapped, a corrupted buffer or a rescaled tensor change the table.
    """
    import torch

    tensors = {**model.state_dict(), **dict(model.named_buffers())}
    table = {}
    with torch.no_grad():
        for name, tensor in tensors.items():
            x = tensor.detach().reshape(-1).to(torch.float64)
            ramp = torch.linspace(-1.0, 1.0, x.numel(), dtype=torch.float64, device=x.device)
            table[name] = [x.sum().item(), x.square().sum().item(), (x * ramp).sum().item()]
    return table


def save_checkpoint(model, tokenizer: IGSMTokenizer, out_dir: str | os.PathLike, provenance: dict,
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write an HF checkpoint folder atomically: everything goes to a temp folder renamed into place.

    ``write_extra(folder)`` may add files (the training loop adds ``trainer_state.pt``) before the rename.
    ``probekit.json`` gets ``provenance`` plus the git revision and a ``fingerprint`` (:func:`weight_fingerprint`
    of ``model`` and the tokenizer's fingerprint; it replaces any ``fingerprint`` in ``provenance``).
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save(tmp)
        fingerprint = {"tensors": weight_fingerprint(model), "tokenizer": tokenizer.fingerprint}
        record = {"git_revision": git_revision(), **provenance, "fingerprint": fingerprint}
        write_atomic(tmp / PROVENANCE_FILE, json.dumps(record, indent=2, default=_jsonable) + "\n")
        if write_extra is not None:
            write_extra(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in {PROVENANCE_FILE}")


def load_checkpoint(path: str | os.PathLike, device: str = "cpu", dtype=None, attn_implementation: str = "sdpa"):
    """Load ``(model, tokenizer, provenance)`` from a checkpoint folder, offline.

    ``attn_implementation``: ``"sdpa"`` (flash attention where available) or ``"eager"`` (the same attention as
    plain matmuls; on a CPU it is the faster one for sequences of a few hundred tokens, see
    :func:`probe_attention`)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a checkpoint folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                 attn_implementation=attn_implementation)
    model.to(device).eval()
    provenance_file = path / PROVENANCE_FILE
    provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
    tokenizer = checkpoint_tokenizer(path, model.get_input_embeddings().num_embeddings)
    return model, tokenizer, provenance


def probe_attention(device: str) -> str:
    """The attention implementation for probing on ``device``: eager on a CPU, where torch's flash-attention
    kernel spends over half of a V-probe step on probe inputs of ~200 tokens and eager attention fits 1.3x
    more examples per second (benchmarks/RESULTS.md); sdpa elsewhere."""
    return "eager" if str(device).startswith("cpu") else "sdpa"


def checkpoint_tokenizer(path: Path, embedding_rows: int) -> IGSMTokenizer:
    """The checkpoint's own tokenizer, or probekit's default for a foreign checkpoint (e.g. a LLaMA
    folder written by another tool), after checking that the embedding has a row for every token."""
    from probekit.tokenizer import default_tokenizer

    tokenizer = IGSMTokenizer.load(path) if (path / "tokenizer.json").exists() else default_tokenizer()
    if tokenizer.vocab_size > embedding_rows:
        raise ValueError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {embedding_rows}"
        )
    return tokenizer
