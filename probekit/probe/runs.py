"""What every probe job shares (:func:`~probekit.probe.experiment.run_probe`,
:func:`~probekit.probe.mistakes.run_mistakes`, :func:`~probekit.probe.depth.run_depth`): the spec of the
checkpoint and of probe training (:class:`ProbeRun`, :class:`HeldOutRun`), loading the checkpoint for probing
(:func:`load_for_probing`), the models a job probes (:func:`probed_models`: the checkpoint and/or its random-init
twin), the progress bar of its data and where fitted probes are saved.

Importing this module loads neither torch nor pandas.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probekit.configs import SettingError, check_at_least, check_preset
from probekit.igsm.presets import resolve_preset
from probekit.probe.packing import check_batches

MODELS = ("pretrained", "random-init")
"""The models a probe job can probe: the checkpoint itself and the same architecture randomly initialised."""

PROBE_BATCH_SIZE = {"med": 256, "hard": 128}
"""The paper's probe batch per preset (App. F.2), used when a run gives none."""


def probe_batch_size(preset: str | None) -> int:
    """The paper's probe batch size for ``preset`` (App. F.2: 256 for med, 128 for hard), a restricted family
    (``hard-op4``) taking its base's (None: med's)."""
    return PROBE_BATCH_SIZE[resolve_preset(preset or "med").base]


@dataclass
class ProbeRun:
    """A checkpoint and how probes are fitted on it (``probekit probe`` options)."""

    checkpoint: str
    """The checkpoint folder."""
    models: tuple[str, ...] = ("pretrained",)
    """Which of :data:`MODELS` to probe, in order."""
    rank: int = 8
    """Rank of the embedding update (0: a linear probe on frozen features)."""
    steps: int = 1000
    lr: float = 2e-3
    batch_size: int | None = None
    """Examples per step (None: the paper's for the preset, :func:`probe_batch_size`)."""
    micro_batch_size: int | None = None
    """Examples per forward (gradient accumulation; None: the batch on CUDA, 32 on CPU)."""
    batches: str = "examples"
    """How a rank > 0 probe's training batches are drawn: ``examples`` (random, the paper's) or ``problems``
    (a problem's examples together, run packed: several times faster; :class:`~probekit.probe.vprobe.VProbe`)."""
    n_train: int = 1000
    """Train-split problems of the probe data."""
    per_problem: int = 10
    """Examples per problem and task."""
    preset: str | None = None
    """iGSM family: med, hard or a restriction such as med-op4-ip12 (None: the checkpoint's training family,
    else med)."""
    format: str = "pq"
    op: int | None = None
    """Force the op of every problem."""
    seed: int = 0
    """Data and probe seed (also seeds the random-init twin)."""
    device: str | None = None
    """Torch device (None: cuda when available, else cpu)."""
    compile: bool = False
    amp: str = "auto"
    """Autocast of the frozen model: auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32."""
    skip_checks: bool = False
    """Skip the fast load-time model checks (recorded in the rows as ``checks_skipped``)."""
    out: str | None = None
    """Folder for the job's files (None: write nothing)."""
    progress: bool = True
    """Progress bars on stderr."""

    def __post_init__(self):
        self.models = tuple(dict.fromkeys(self.models))

    def check(self) -> None:
        """Raise ``ValueError`` for settings out of range."""
        bad = [m for m in self.models if m not in MODELS]
        if bad or not self.models:
            raise ValueError(f"unknown model {', '.join(bad) or 'none'}: use {', '.join(MODELS)}")
        check_at_least(self, 0, "rank")
        check_at_least(self, 1, "steps", "n_train", "batch_size")
        check_batches(self.batches)
        check_preset(self)

    def probe_kwargs(self, device: str, preset: str | None = None) -> dict:
        """The :class:`~probekit.probe.vprobe.VProbe` settings of this run on problems of ``preset`` (which sets
        the batch size when the run gives none)."""
        return {
            "steps": self.steps,
            "lr": self.lr,
            "batch_size": self.batch_size or probe_batch_size(preset),
            "seed": self.seed,
            "device": device,
            "compile": self.compile,
            "micro_batch_size": self.micro_batch_size,
            "amp": self.amp,
            "batches": self.batches,
        }

    def bar_label(self, text: str) -> str | bool:
        """A probe's progress-bar label (False without progress)."""
        return text if self.progress else False


@dataclass
class HeldOutRun(ProbeRun):
    """A :class:`ProbeRun` scored on fresh test-split problems; it probes the checkpoint and its random-init twin
    unless told otherwise (the paper's baseline)."""

    models: tuple[str, ...] = MODELS

    n_test: int = 400
    """Test-split problems."""
    test_op: int | None = None
    """Force the op of the test problems."""
    reask: bool = False
    """Re-asked test problems."""
    fresh: bool = False
    """Train on new problems every epoch (``n_train`` problems per epoch, :class:`~probekit.probe.data.FreshData`):
    the paper's fresh data on the fly; False cycles the same ``n_train`` problems. Needs ``rank > 0``."""

    def check(self) -> None:
        super().check()
        check_at_least(self, 1, "n_test")
        if self.fresh and self.rank == 0:
            raise SettingError(
                "fresh", "needs rank > 0: a rank-0 probe trains on the frozen features of n_train problems"
            )

    def data_args(self, preset: str) -> tuple[str, str, int, int, int, int | None, int | None, bool]:
        """The leading arguments of :func:`~probekit.probe.data.train_test_data` and
        :func:`~probekit.probe.depth.depth_data` for problems of ``preset``: preset, format, n_train, n_test,
        seed, op, test_op, reask (``fresh`` goes by keyword)."""
        return (preset, self.format, self.n_train, self.n_test, self.seed, self.op, self.test_op, self.reask)


@dataclass
class Loaded:
    """A checkpoint loaded for probing, with the problem family its probe data are drawn from."""

    device: str
    model: Any
    tokenizer: Any
    preset: str
    """``run.preset``, else the checkpoint's training family."""
    context: int
    """The model's context: longer examples are left out."""


def load_for_probing(run: ProbeRun) -> Loaded:
    """Load ``run.checkpoint`` with the attention fastest for probes of ``run.rank`` on the device (rank 0 reads
    frozen features), after the fast load-time checks (unless ``run.skip_checks``)."""
    from probekit.checkpoint import (
        fastest_attention,
        load_checkpoint,
        select_device,
        training_family,
    )

    device = select_device(run.device)
    model, tokenizer, provenance = load_checkpoint(
        run.checkpoint, device=device, attn_implementation=fastest_attention(device, frozen=run.rank == 0)
    )
    if not run.skip_checks:
        from probekit.modelcheck import require_healthy

        require_healthy((model, tokenizer, provenance), device=device)
    preset = run.preset or training_family(provenance)[0]
    return Loaded(device, model, tokenizer, preset, int(model.config.max_position_embeddings))


def probed_models(run: ProbeRun, model):
    """Yield ``(label, model)`` for each of ``run.models``: the checkpoint and/or its random-init twin (built
    when reached, so a random-init-only run never holds two models)."""
    from probekit.probe.layers import random_init_like

    for label in run.models:
        yield label, (model if label == "pretrained" else random_init_like(model, seed=run.seed))


@contextlib.contextmanager
def data_progress(run: ProbeRun, total: int, desc: str):
    """A progress bar over the ``total`` problems of a job's probe data; yields its ``update``. Warnings about
    too-long examples are silenced inside (the jobs count and report them)."""
    from tqdm import tqdm

    with (
        tqdm(
            total=total, desc=desc, unit="problem", file=sys.stderr, disable=not run.progress, dynamic_ncols=True
        ) as bar,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield bar.update


def save_probe(run: ProbeRun, probe, folder: Path, label: str, task: str, hook: str) -> None:
    """Save a fitted probe as ``folder/<label>-<task>-<layer>`` (a pretrained-model probe records the
    checkpoint it reads)."""
    if label == "pretrained":
        probe.model_path_ = str(Path(run.checkpoint).resolve())
    short = hook.replace(".hook_resid_post", "").replace(".hook_out", "").replace(".", "")
    probe.save(folder / f"{label}-{task}-{short}")
