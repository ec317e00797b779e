"""Checkpoints: the folder format, its one strict loader and what can be read from a folder without loading it.

A checkpoint is a plain Hugging Face folder (``config.json``, ``model.safetensors``, the tokenizer files) plus
``probekit.json``, the run's provenance (training config, data preset, step, git revision and a ``fingerprint``
of the saved tensors and tokenizer that ``probekit inspect`` checks a loaded model against). A training run
keeps its checkpoints as ``OUT/checkpoints/step_NNNNNN`` (each with ``trainer_state.pt``) and names the newest
in ``OUT/checkpoints/latest``.

- :func:`load_checkpoint` -> :class:`Checkpoint` (model, tokenizer, provenance, path): refuses a folder whose
  files are damaged (:func:`verify_files`) or whose weights do not match its config, and repairs the
  non-persistent rotary buffers (:func:`fix_rotary`);
- :func:`resolve_checkpoint`: what every command's checkpoint argument may be (a folder, the ``latest`` pointer
  file, a run folder ``OUT``);
- :func:`save_checkpoint`: the atomic writer (temp folder renamed into place);
- :func:`read_provenance`, :func:`provenance_value`, :func:`training_family`: the provenance, without the model;
- :func:`latest_checkpoint`, :func:`complete_checkpoints`: a training run's checkpoints;
- :func:`select_device`: ``cuda`` when available, else ``cpu`` (every command's default).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from probekit.modeling import git_revision
from probekit.records import atomic_folder, write_atomic
from probekit.tokenizer import TOKENIZER_FILE, IGSMTokenizer, TokenizerFileError

PROVENANCE_FILE = "probekit.json"
STATE_FILE = "trainer_state.pt"
"""The trainer state (optimizer, schedule position, RNG and data-stream state) kept in a run's checkpoints."""
LATEST = "latest"
"""The file in ``OUT/checkpoints`` that names the newest checkpoint of a run."""


class CheckpointError(ValueError):
    """A folder that is not a usable checkpoint (a damaged file, weights that do not match the config, a too-small
    embedding); the message names the folder or the file."""


class NotACheckpointError(FileNotFoundError):
    """A path given as a checkpoint names no checkpoint folder (nothing there, or no ``config.json``). The
    commands exit 2 for it (:attr:`usage_error`), as for a bad option: the input is wrong, nothing failed."""

    usage_error = True


@dataclass
class Checkpoint:
    """A loaded checkpoint. It unpacks like a tuple: ``model, tokenizer, provenance = load_checkpoint(path)``.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The causal LM, in eval mode, on the requested device.
    tokenizer : IGSMTokenizer
        The folder's own tokenizer (probekit's default for a foreign folder without one).
    provenance : dict
        The folder's ``probekit.json`` ({} when absent).
    path : pathlib.Path or None
        The folder it was loaded from (None for a checkpoint assembled in memory).
    """

    model: Any
    tokenizer: IGSMTokenizer
    provenance: dict
    path: Path | None = None

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.provenance))


# ---------------------------------------------------------------------------- devices
def select_device(device: str | None = None) -> str:
    """``device`` when given, else ``"cuda"`` when a CUDA device is available, else ``"cpu"``.

    Raises
    ------
    ValueError
        ``device`` asks for CUDA and none is available.
    """
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available")
    return str(device)


# ---------------------------------------------------------------------------- saving
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


def save_checkpoint(
    model,
    tokenizer: IGSMTokenizer,
    out_dir: str | os.PathLike,
    provenance: dict,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write an HF checkpoint folder atomically: everything goes to a temp folder renamed into place.

    ``write_extra(folder)`` may add files (the training loop adds ``trainer_state.pt``) before the rename.
    ``probekit.json`` gets ``provenance`` plus the git revision and a ``fingerprint`` (:func:`weight_fingerprint`
    of ``model`` and the tokenizer's fingerprint; it replaces any ``fingerprint`` in ``provenance``).

    The temp folder ``.NAME.<pid>@<host>.XXXXXXXX.tmp`` (and ``.NAME.<pid>@<host>.old``, the folder replaced)
    names its writer: a failing or interrupted writer deletes it, and the next save of ``NAME`` deletes those of
    a killed one (:func:`probekit.records.remove_stale_temporaries`).
    """
    with atomic_folder(Path(out_dir)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save(tmp)
        fingerprint = {"tensors": weight_fingerprint(model), "tokenizer": tokenizer.fingerprint}
        record = {"git_revision": git_revision(), **provenance, "fingerprint": fingerprint}
        write_atomic(tmp / PROVENANCE_FILE, json.dumps(record, indent=2, default=_jsonable) + "\n")
        if write_extra is not None:
            write_extra(tmp)
    return Path(out_dir)


def _jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in {PROVENANCE_FILE}")


# ---------------------------------------------------------------------------- loading
def load_model(
    path: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype=None,
    attn_implementation: str = "sdpa",
    repair_rotary: bool = True,
):
    """The causal LM of a checkpoint folder, offline, in eval mode on ``device``.

    ``path`` may also be a ``latest`` pointer file or a run folder (:func:`resolve_checkpoint`). Strict: the
    folder's files must be intact (:func:`verify_files`) and every weight of the config's model must be in
    the folder (tied copies excepted) with its shape. ``repair_rotary`` recomputes the non-persistent rotary
    buffers from the config (:func:`fix_rotary`; a repair is reported on stderr); ``probekit inspect`` turns it
    off to see the buffers as loaded.

    Raises
    ------
    NotACheckpointError
        ``path`` names no checkpoint folder (:func:`checkpoint_folder`).
    CheckpointError
        A file is damaged (truncated or corrupt; the message names it), the weights are missing or do not match
        the config, or transformers cannot build the model.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, PreTrainedModel

    given = Path(path)
    path = checkpoint_folder(given)
    if path != given:
        print(f"probekit: {given} is the checkpoint {path}", file=sys.stderr)
    verify_files(path)
    model: PreTrainedModel
    info: dict[str, Any]
    try:
        # transformers types from_pretrained as returning the model even with output_loading_info=True
        model, info = AutoModelForCausalLM.from_pretrained(  # type: ignore[misc]
            path, local_files_only=True, dtype=dtype, attn_implementation=attn_implementation, output_loading_info=True
        )
    except (ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"{path}: cannot load a causal language model: {err}") from None
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError) as err:  # damage verify_files missed
        raise CheckpointError(
            f"{path}: cannot load a causal language model (damaged weights?): {type(err).__name__}: {err}"
        ) from None
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        raise CheckpointError(
            f"{path}: the weights do not match the model of its config.json: missing {missing[:5]}, "
            f"mismatched {[m[0] if isinstance(m, (tuple, list)) else m for m in mismatched[:5]]}"
        )
    if repair_rotary:
        fixed = fix_rotary(model)
        if fixed:
            print(f"probekit: repaired rotary buffers {fixed} after loading {path}", file=sys.stderr)
    # PreTrainedModel.to is @wraps(torch.nn.Module.to): its typed signature lost the bound self
    return model.to(device).eval()  # type: ignore[arg-type]


def load_checkpoint(
    path: str | os.PathLike,
    device: str | None = "cpu",
    dtype=None,
    attn_implementation: str = "sdpa",
    repair_rotary: bool = True,
) -> Checkpoint:
    """Load a checkpoint folder, offline (see :func:`load_model` for what is refused).

    Parameters
    ----------
    path : str or os.PathLike
        The folder (``config.json``, ``model.safetensors``, tokenizer files, ``probekit.json``), or a ``latest``
        pointer file or a run folder standing for one (:func:`resolve_checkpoint`).
    device : str or None
        Where the model goes (None: :func:`select_device`).
    dtype : torch.dtype or None
        The model's parameter dtype (None: as transformers loads it).
    attn_implementation : str
        ``"sdpa"`` (flash attention where available) or ``"eager"`` (the same attention as plain matmuls; on a
        CPU the faster one for sequences of a few hundred tokens, see :func:`fastest_attention`).
    repair_rotary : bool
        Recompute the rotary buffers from the config (:func:`fix_rotary`).

    Returns
    -------
    Checkpoint
        ``model, tokenizer, provenance`` (it unpacks as that tuple) and ``path`` (the folder).
    """
    given = Path(path)
    path = resolve_checkpoint(given)
    if path != given:
        print(f"probekit: {given} is the checkpoint {path}", file=sys.stderr)
    model = load_model(
        path,
        device=select_device(device),
        dtype=dtype,
        attn_implementation=attn_implementation,
        repair_rotary=repair_rotary,
    )
    tokenizer = checkpoint_tokenizer(path, model.get_input_embeddings().num_embeddings)
    return Checkpoint(model, tokenizer, read_provenance(path, strict=True), path)


def checkpoint_tokenizer(path: Path, embedding_rows: int) -> IGSMTokenizer:
    """The checkpoint's own tokenizer, or probekit's default for a foreign checkpoint (e.g. a LLaMA
    folder written by another tool), after checking that the embedding has a row for every token."""
    from probekit.tokenizer import default_tokenizer

    try:
        tokenizer = IGSMTokenizer.load(path) if (path / TOKENIZER_FILE).exists() else default_tokenizer()
    except TokenizerFileError as err:
        raise CheckpointError(str(err)) from None
    if tokenizer.vocab_size > embedding_rows:
        raise CheckpointError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {embedding_rows}"
        )
    return tokenizer


# ---------------------------------------------------------------------------- damaged files
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def verify_files(path: str | os.PathLike) -> None:
    """Cheap integrity checks of a checkpoint folder's files, so that a truncated or corrupt file ends in an
    error naming it rather than a parser's message: ``config.json``, ``generation_config.json`` and
    ``tokenizer.json`` (when present) must parse as JSON, and every safetensors weight file
    (``model.safetensors`` or the shards its index names) must have a readable header and exactly the size that
    header describes (:func:`check_safetensors`). The tensor bytes themselves are not read (``probekit
    inspect`` compares them with the save-time fingerprint).

    Raises
    ------
    CheckpointError
        A damaged file (the message names it and says what is wrong).
    """
    path = Path(path)
    for name in ("config.json", "generation_config.json", TOKENIZER_FILE):
        if (path / name).exists():
            read_json_file(path / name)
    if (path / WEIGHTS_FILE).exists():
        check_safetensors(path / WEIGHTS_FILE)
    elif (path / WEIGHTS_INDEX).exists():
        index = read_json_file(path / WEIGHTS_INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{path / WEIGHTS_INDEX}: corrupt safetensors index (no weight_map)")
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (path / shard).exists():
                raise CheckpointError(f"{path / WEIGHTS_INDEX} names {shard}, which is missing")
            check_safetensors(path / shard)


def read_json_file(path: Path):
    """The JSON content of ``path``; a truncated or corrupt file is a :class:`CheckpointError` naming it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable: {err.strerror or err}") from None
    try:
        return json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path}: truncated or corrupt JSON file ({len(data)} bytes; {err})") from None


def check_safetensors(path: Path) -> None:
    """Check a safetensors file without reading its tensors: an 8-byte header length, a JSON header of that
    length, and a file size equal to header plus the end of the last tensor. A file cut short fails here."""

    def damaged(detail: str) -> CheckpointError:
        return CheckpointError(f"{path}: truncated or corrupt safetensors file ({detail})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise damaged(f"{size} bytes: too short for a header")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise damaged(f"{size} bytes, shorter than the {n}-byte header it announces")
            header = fh.read(n)
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable: {err.strerror or err}") from None
    try:
        table = json.loads(header)
        ends = [int(v["data_offsets"][1]) for k, v in table.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise damaged(f"{size} bytes, with an unreadable header") from None
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise damaged(f"{size} bytes, but its header describes {expected} bytes")


# ---------------------------------------------------------------------------- what a checkpoint argument names
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder that a command's checkpoint argument stands for:

    - a checkpoint folder (with ``config.json``): itself;
    - a pointer file such as ``OUT/checkpoints/latest`` (its text names a folder beside it): that folder;
    - a folder holding a ``latest`` pointer (``OUT/checkpoints``) or a run folder ``OUT`` (with
      ``checkpoints/`` inside): the checkpoint :func:`latest_checkpoint` picks;
    - anything else: ``path`` unchanged (the loader then says what is missing).

    Raises
    ------
    CheckpointError
        A file that is not a pointer to a checkpoint folder, or a run folder without a complete checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return _follow_pointer(path)
    if path.is_dir() and not (path / "config.json").exists():
        if (path / LATEST).is_file():
            return _follow_pointer(path / LATEST)
        if (path / "checkpoints").is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise CheckpointError(f"{path}: a run folder without a complete checkpoint in {path / 'checkpoints'}")
            return found
    return path


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """:func:`resolve_checkpoint`, refusing a path that then names no checkpoint folder.

    Raises
    ------
    NotACheckpointError
        Nothing at ``path``, or a folder without ``config.json`` (the message says which).
    CheckpointError
        As :func:`resolve_checkpoint`.
    """
    if not Path(path).exists():
        raise NotACheckpointError(f"{path}: no such file or folder (expected a checkpoint folder)")
    folder = resolve_checkpoint(path)
    if not (folder / "config.json").is_file():
        raise NotACheckpointError(f"{folder} is not a checkpoint folder (no config.json)")
    return folder


def _follow_pointer(pointer: Path) -> Path:
    """The checkpoint folder a pointer file (``latest``: one line naming a folder beside it) names."""
    not_pointer = CheckpointError(
        f"{pointer} is a file, not a checkpoint folder (nor a pointer file such as checkpoints/latest naming one)"
    )
    try:
        if pointer.stat().st_size > 4096:
            raise not_pointer
        text = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise not_pointer from None
    if not text or "\n" in text:
        raise not_pointer
    target = pointer.parent / text
    if not (target / "config.json").exists():
        raise CheckpointError(f"{pointer} names {text}, which is not a checkpoint folder (no {target / 'config.json'})")
    return target


def fastest_attention(device, frozen: bool = False) -> str:
    """The attention implementation to run a model with on ``device``. On a CPU, where gradients flow through
    the model (training; V-probes of rank > 0), eager: torch's flash-attention kernel spends over half of a
    V-probe step on probe inputs of ~200 tokens (eager attention fits 1.3x more examples per second) and eager
    attention trains gpt2-8-2 at context 512 1.2x faster; for ``frozen`` forwards (rank-0 features over packed
    rows with a custom mask, :mod:`probekit.probe.packing`) sdpa, 1.2-1.4x eager (benchmarks/RESULTS.md).
    sdpa elsewhere."""
    return "eager" if str(device).startswith("cpu") and not frozen else "sdpa"


# ---------------------------------------------------------------------------- rotary
def rotary_fraction(config) -> float:
    """The fraction of each head's dimensions the model rotates: GPT-NeoX's ``partial_rotary_factor``
    (transformers fills in its default 0.25 when config.json has none); 1.0 for LLaMA, which rotates all."""
    if config.model_type == "llama":
        return 1.0
    return float((config.rope_parameters or {}).get("partial_rotary_factor", 1.0))


def expected_inv_freq(config):
    """The rotary ``inv_freq`` implied by the config: ``1 / theta ** (arange(0, dim, 2) / dim)`` with ``dim`` the
    rotated part of a head (default rotary type)."""
    import torch

    theta = float(config.rope_parameters["rope_theta"])
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * rotary_fraction(config))
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))


def fix_rotary(model) -> list[str]:
    """Recompute the non-persistent rotary buffers (``inv_freq`` ...) of ``model`` from its config and repair
    any that differ; returns the repaired names. A reproduction lost weeks to garbage ``inv_freq`` after
    ``from_pretrained``; the buffers are never stored in a checkpoint, so they must come from the config."""
    import torch

    fixed = []
    for name, module in model.named_modules():
        if not hasattr(module, "inv_freq") or not hasattr(module, "config"):
            continue
        try:
            fresh = type(module)(module.config)
        except Exception:  # an unfamiliar rotary class: leave it
            continue
        for key, buf in fresh.named_buffers(recurse=False):
            current = module._buffers.get(key)
            if (
                current is None
                or current.shape != buf.shape
                or not torch.equal(current.detach().float().cpu(), buf.float())
            ):
                module._buffers[key] = buf.to(current.device if current is not None else "cpu")
                fixed.append(f"{name}.{key}")
    return fixed


# ---------------------------------------------------------------------------- provenance
def read_provenance(checkpoint: str | Path, strict: bool = False) -> dict:
    """A checkpoint folder's ``probekit.json`` without loading the model: {} when absent; when unreadable, {}
    or, with ``strict`` (what :func:`load_checkpoint` uses), a :class:`CheckpointError` naming the file.
    ``checkpoint`` may be a ``latest`` pointer file or a run folder (:func:`resolve_checkpoint`)."""
    try:
        folder = resolve_checkpoint(checkpoint)
    except CheckpointError:
        if strict:
            raise
        return {}
    path = folder / PROVENANCE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        if strict:
            raise CheckpointError(f"{path}: unreadable provenance: {err}") from None
        return {}
    if not isinstance(data, dict):
        if strict:
            raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return {}
    return data


def provenance_value(provenance: dict, key: str, allowed: Sequence[str]) -> str | None:
    """``key`` from a checkpoint's ``probekit.json``: top level, then under ``data``, then anywhere (depth first);
    only values in ``allowed`` count."""

    def ok(v):
        return isinstance(v, str) and v in allowed

    if ok(provenance.get(key)):
        return provenance[key]
    data = provenance.get("data")
    if isinstance(data, dict) and ok(data.get(key)):
        return data[key]
    stack = [provenance]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if ok(node.get(key)):
                return node[key]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return None


def training_family(provenance: dict) -> tuple[str, str]:
    """``(preset, format)`` of the problems a checkpoint was trained on, from its ``probekit.json``: the base
    preset (med when unknown) restricted by the training config's ``data.max_op`` / ``data.max_edge`` and
    named the way training names it (``med-op4-ip12``), so that evaluation and probes draw the model's
    own family by default; the format is pq when unknown."""
    from probekit.igsm.presets import restricted_preset

    data = (provenance.get("training_config") or {}).get("data") or provenance.get("data") or {}
    base = provenance_value(provenance, "preset", ("med", "hard")) or "med"
    fmt = provenance_value(provenance, "format", ("pq", "qp")) or "pq"
    return restricted_preset(base, data.get("max_op"), data.get("max_edge")).name, fmt


# ---------------------------------------------------------------------------- a run's checkpoints
def step_name(step: int) -> str:
    return f"step_{step:06d}"


def complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Finished checkpoint folders (model and trainer state present), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [
        p
        for p in ckpt_dir.glob("step_*")
        if p.is_dir() and (p / STATE_FILE).exists() and (p / "config.json").exists() and p.name[5:].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    """The checkpoint ``OUT/checkpoints/latest`` names, else the newest complete one, else None."""
    ckpt_dir = Path(out) / "checkpoints"
    pointer = ckpt_dir / LATEST
    if pointer.exists():
        path = ckpt_dir / pointer.read_text().strip()
        if (path / STATE_FILE).exists():
            return path
    found = complete_checkpoints(ckpt_dir)
    return found[-1] if found else None
