"""The V-probe (paper §4, App. F.2): a frozen LM, a rank-r update of its input embedding, a linear head.

Trainable parts (everything else is frozen: ``requires_grad`` False, eval mode, weights never change):

- the **embedding update** ``E + U V^T`` with ``U``: (embedding rows x r), zero-initialised, and ``V``:
  (d x r) ~ N(0, 0.02). The zero ``U`` makes the update start at exactly 0, so step 0 probes the unmodified
  model; the random ``V`` lets ``U`` receive gradients from the first step (``U = V = 0`` would be a
  saddle). It applies to *every* input token, including ``[START]``, ``[MID]``, ``[END]`` (the rows the probe
  most needs to move: the pretrained model never saw them). It is run as ``inputs_embeds = E[ids] +
  U[ids] V^T``, which is exactly the model with embedding matrix ``E + U V^T``. ``rank=0``: no update, a plain
  linear probe.
- the **linear head** on the hidden state at the final ``[END]`` of hook ``layer`` (default
  ``ln_final.hook_out``: the last block after the final norm, the paper's "last hidden state"; ``layer=-1`` is
  the last block *before* the final norm; see :mod:`probekit.probe.hooks`). Its weight starts at
  zero and its bias at the log prior of the train labels (the untrained probe answers the majority class; see
  ``_init_bias``). Its input is standardised with a *fixed* per-feature mean and standard deviation measured once, before
  training, on (up to 1024) training examples of the unmodified model: a reparametrisation of the same linear
  head (``W (h - mu) / sigma + b`` is linear in ``h``) that makes one learning rate fit every layer and model
  (residual norms differ by orders of magnitude between layers, pretrained and random models).
  ``standardize=False`` reads the raw hidden state.

Training (paper App. F.2 = pretraining setup with these changes): AdamW, betas (0.9, 0.98), LR 0.002, no
warm-up, linear decay to 0 over ``steps``, weight decay 0.01 (on U, V and the head's weight, not its bias),
batch 256 examples, cross-entropy (2 classes; 24 for ``value``). Batches are drawn by epochs of random
permutations of the training set; a batch is split into ``micro_batch_size`` chunks (gradient accumulation,
sorted by length to cut padding). Inputs are right-padded and run *without* an attention mask: causal
attention keeps padding out of every real position, and position ids stay 0..n-1 (tests check that a padded
batch equals the unpadded runs). With ``batches="problems"`` an epoch's order keeps each problem's examples
together (problems in random order, each problem's examples in a random order), so a chunk holds few problems
and runs *packed* (:mod:`probekit.probe.packing`: a problem's prompt once, each example's ``[START] A [END]``
tail after it, a 4D mask): the same features and gradients as the unpacked examples at a fraction of the tokens
(nece: about a tenth), in a different batch order. The no-grad passes (standardisation, predictions) always
run packed with the ``hf`` back-end. The forward runs only the blocks up to the read layer, so the backward to
the embedding update does too. On CUDA: bf16 autocast (``amp="auto"``) and optional ``torch.compile``.

``rank=0`` takes a cheap path: the frozen features are computed once, then only the head is trained.

Scores (:meth:`VProbe.score_table`, :func:`score_row`; :meth:`VProbe.score` is the accuracy alone): ``accuracy``;
``accuracy_pos`` / ``accuracy_neg`` (accuracy on examples whose true label is 1 / 0; NaN for ``value``);
``majority``: the accuracy of always answering the most frequent class *of the training labels* (fixed at
``fit``), measured on the scored data, so it is the baseline a probe that learned nothing but the label prior
would reach; ``n``, ``n_pos``, ``n_problems`` (distinct problems);
``accuracy_unnecessary`` / ``n_unnecessary``: accuracy and count on the examples whose parameter A is not
necessary (nece(A) = false; the paper's Fig. 7(b)).

Intervals (:mod:`probekit.probe.stats`; ``bootstrap`` resamples, default 1000, 0 = off and NaN): 95% percentile
bootstrap intervals *over problems* (examples of one problem are correlated), seeded: ``ci_low`` /
``ci_high`` (accuracy), ``ci_low_pos`` / ``ci_high_pos``, ``ci_low_neg`` / ``ci_high_neg``,
``ci_low_unnecessary`` / ``ci_high_unnecessary``; ``bootstrap`` records the number of resamples.

Control task (Hewitt and Liang 2019; filled by :func:`probekit.probe.layers.probe_layers`, NaN otherwise): the
same probe trained and scored on labels assigned at random per control key (the counted item or category word
of A, :func:`stats.control_keys`; :func:`stats.control_labels`), scored on the test examples whose key occurs
in training: ``control_accuracy`` (with ``ci_low_control`` / ``ci_high_control``), ``control_majority`` (the
majority baseline of the control labels), ``control_seen`` (share of test examples with a seen key),
``n_control``, ``accuracy_seen`` (the real probe on those examples) and ``selectivity`` = accuracy_seen -
control_accuracy (with the paired
``ci_low_selectivity`` / ``ci_high_selectivity``).
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import time
from pathlib import Path
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probekit.probe import hooks, packing, stats
from probekit.probe.data import FreshData, ProbeData, check_task, n_classes
from probekit.probe.estimator import Estimator, NotFittedError

PROBE_WEIGHTS = "probe.safetensors"
PROBE_CONFIG = "probe.json"
STANDARDIZE_EXAMPLES = 1024


def _default_device(model) -> torch.device:
    return next(model.parameters()).device


def pad_batch(seqs, pad_id: int, multiple: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad int sequences: ``(ids (B, L), end (B,))`` with ``end`` the index of each last token."""
    lengths = [len(s) for s in seqs]
    width = max(lengths)
    width = -(-width // multiple) * multiple
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    ids = torch.from_numpy(out)
    end = torch.tensor(lengths, dtype=torch.long) - 1
    if device is not None:
        ids, end = ids.to(device, non_blocking=True), end.to(device, non_blocking=True)
    return ids, end


class ProbeParams(nn.Module):
    """The trainable parameters: ``U`` (rows x r), ``V`` (d x r), the head and the fixed standardisation."""

    mean: torch.Tensor  # buffers (register_buffer in __init__)
    scale: torch.Tensor

    def __init__(
        self, vocab_rows: int, d_model: int, rank: int, classes: int, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.rank = rank
        if rank:
            self.U = nn.Parameter(torch.zeros(vocab_rows, rank))
            self.V = nn.Parameter(torch.randn(d_model, rank, generator=generator) * 0.02)
        self.head = nn.Linear(d_model, classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("mean", torch.zeros(d_model))
        self.register_buffer("scale", torch.ones(d_model))

    def delta(self, ids: torch.Tensor) -> torch.Tensor | None:
        """``U[ids] V^T``: the embedding update for these tokens (None for rank 0)."""
        if not self.rank:
            return None
        return self.U[ids] @ self.V.T

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head((features.float() - self.mean) / self.scale)


class VProbe(Estimator):
    """V-probe estimator (module doc): ``VProbe(task, rank=8).fit(model, train).score(test)``.

    It follows the scikit-learn estimator contract: ``__init__`` only stores its arguments (they are checked
    by ``fit``), ``get_params`` / ``set_params`` make ``sklearn.base.clone`` work, ``fit`` returns the probe
    and ``score`` the accuracy; reading a fitted attribute before ``fit`` raises
    :class:`~probekit.probe.estimator.NotFittedError`. ``model`` arguments may be an HF causal LM or a checkpoint
    path (loaded with ``load_checkpoint``); ``data`` arguments are :class:`~probekit.probe.data.ProbeData`,
    whose examples of other tasks are ignored.

    Parameters
    ----------
    task : str, default "nece"
        The probing task, one of :data:`probekit.probe.data.TASKS`.
    rank : int, default 8
        Rank r of the embedding update ``U V^T``; 0 trains the linear head alone (a plain linear probe).
    layer : int or str, default ``"ln_final.hook_out"``
        The hidden state read: a hook name (:func:`probekit.probe.hooks.layer_name`; default after the final
        norm) or a block index (negative from the end; -1 = the last block's ``resid_post``, before the norm).
    steps : int, default 1000
        Optimizer steps (>= 1).
    lr : float, default 2e-3
        AdamW learning rate, decayed linearly to 0 over ``steps``.
    batch_size : int, default 256
        Examples per step (>= 1).
    weight_decay : float, default 0.01
        AdamW weight decay of U, V and the head's weight (not its bias).
    seed : int, default 0
        Seeds the initialisation of V, the batches, the standardisation sample and the bootstrap.
    device : str or None, default None
        Where the model and the probe run; None: the model's device.
    amp : {"auto", "bf16", None}, default "auto"
        Autocast dtype: "auto" = bf16 on CUDA, fp32 elsewhere; "bf16" always; None never.
    compile : bool, default False
        ``torch.compile`` the feature function (CUDA only).
    micro_batch_size : int or None, default None
        Gradient-accumulation chunk of a training batch; None: ``batch_size`` on CUDA, 32 on CPU.
    eval_batch_size : int or None, default None
        Batch of the no-grad passes (features, predictions); None: 256 on CUDA, 64 on CPU.
    standardize : bool, default True
        Standardise the head's input with a fixed per-feature mean and scale (module doc).
    backend : {"hf", "bridge"}, default "hf"
        How hidden states are read (:func:`probekit.probe.hooks.make_reader`).
    betas : tuple of float, default (0.9, 0.98)
        AdamW betas.
    progress : bool or str, default False
        Show a training progress bar (a string is its label).
    batches : {"examples", "problems"}, default "examples"
        How a rank > 0 probe's training batches are drawn: random examples (the paper's), or problem by problem
        with packed forwards (module doc; several times faster, ``hf`` back-end only).

    Attributes
    ----------
    params_ : ProbeParams
        The trained U, V, head and standardisation.
    n_classes_ : int
        Number of classes of ``task``.
    majority_class_ : int
        The most frequent class of the training labels (the ``majority`` baseline).
    model_ : transformers.PreTrainedModel or None
        The frozen model the probe reads (None after ``fit_features`` without a model, or ``load`` without one
        until the first prediction).
    model_path_ : str or None
        The checkpoint path the model was loaded from (None when it was given as an object).
    device_ : torch.device
        Where the probe runs.
    layer_name_ : str or None
        The hook name read (None after ``fit_features`` with an integer ``layer`` and no model).
    history_ : list of float
        Training loss per step (``load``: the final loss only).
    n_train_ : int
        Number of training examples (set by ``fit`` and ``fit_features``; with fresh data: of the first epoch).
    epochs_ : int
        Epochs of the training data the fit read (1 unless ``fit`` read :class:`~probekit.probe.data.FreshData`,
        whose every epoch holds new problems).
    fit_seconds_ : float
        Training time in seconds (set by ``fit`` and ``fit_features``).
    examples_per_second_ : float or None
        Training throughput of the full V-probe (None for rank 0; set by ``fit`` and ``fit_features``).
    """

    def __init__(
        self,
        task: str = "nece",
        rank: int = 8,
        layer: int | str = hooks.READOUT,
        steps: int = 1000,
        lr: float = 2e-3,
        batch_size: int = 256,
        weight_decay: float = 0.01,
        seed: int = 0,
        device: str | None = None,
        amp: str | None = "auto",
        compile: bool = False,
        micro_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        standardize: bool = True,
        backend: str = "hf",
        betas: tuple[float, float] = (0.9, 0.98),
        progress: bool | str = False,
        batches: str = "examples",
    ):
        self.task, self.rank, self.layer, self.steps, self.lr = task, rank, layer, steps, lr
        self.batch_size, self.weight_decay, self.seed = batch_size, weight_decay, seed
        self.device, self.amp, self.compile = device, amp, compile
        self.micro_batch_size, self.eval_batch_size = micro_batch_size, eval_batch_size
        self.standardize, self.backend, self.betas, self.progress = standardize, backend, betas, progress
        self.batches = batches

    # ------------------------------------------------------------------ set-up
    def _validate_params(self):
        """Check the parameters (``fit`` and ``fit_features`` call this before anything else)."""
        check_task(self.task)
        for name in ("rank", "steps", "batch_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        if self.rank < 0:
            raise ValueError(f"rank must be an integer >= 0, not {self.rank!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        packing.check_batches(self.batches)
        if self.batches == "problems" and self.backend != "hf":
            raise ValueError("batches='problems' runs packed rows, which the 'hf' back-end reads; use backend='hf'")

    def _hparams(self) -> dict:
        """The parameters recorded by :meth:`save` (all but ``device`` and ``progress``)."""
        return {k: v for k, v in self.get_params().items() if k not in ("device", "progress")}

    def _attach(self, model):
        """Resolve ``model`` (object or checkpoint path), move it to the device, remember it (``model_``,
        ``device_``, ``layer_name_``; ``model_path_`` for a path). A fitted probe checks that it fits the model."""
        if isinstance(model, (str, os.PathLike)):
            from probekit.checkpoint import load_checkpoint

            self.model_path_ = str(Path(model).resolve())
            model = load_checkpoint(model, device=self.device).model
        if self.device is not None and _default_device(model) != torch.device(self.device):
            model.to(self.device)
        model.eval()
        self.model_ = model
        self.device_ = _default_device(model)
        self.layer_name_ = hooks.layer_name(self.layer, hooks.n_layers(model))
        self._reader = None
        if "params_" in vars(self):
            self._check_shapes(model)
            self.params_.to(self.device_)
        return model

    def _check_shapes(self, model):
        d, rows = model.config.hidden_size, model.get_input_embeddings().num_embeddings
        if self.params_.head.in_features != d or (self.rank and self.params_.U.shape[0] != rows):
            raise ValueError(
                f"probe shapes (d={self.params_.head.in_features}) do not fit this model (d={d}, {rows} embedding rows)"
            )

    def _model(self, model=None):
        if model is not None:
            return self._attach(model) if model is not self.model_ else model
        if self.model_ is None:
            if self.model_path_ and Path(self.model_path_).exists():
                return self._attach(self.model_path_)
            raise RuntimeError("this probe has no model: pass model= (or fit it first)")
        return self.model_

    def _amp_dtype(self):
        if self.amp == "auto":
            return torch.bfloat16 if self.device_.type == "cuda" else None
        if self.amp in (None, False, "none", "fp32"):
            return None
        if self.amp in ("bf16", "bfloat16", True):
            return torch.bfloat16
        raise ValueError(f"amp must be 'auto', 'bf16' or None, not {self.amp!r}")

    def _features_fn(self):
        """``fn(ids, at_row, at_col, allowed=None, position_ids=None) -> (n, d)``: float32 hidden states at
        ``(at_row, at_col)`` of the rows ``ids`` (differentiable w.r.t. U and V); ``allowed`` and
        ``position_ids`` for packed rows (:class:`probekit.probe.hooks.HiddenReader`)."""
        if self._reader is None:
            reader = hooks.make_reader(self.model_, self.layer_name_, self.backend)
            params = self.params_

            def features(ids, at_row, at_col, allowed=None, position_ids=None):
                extra = {} if allowed is None else {"allowed": allowed, "position_ids": position_ids}
                h = reader(ids, params.delta(ids), **extra)
                return h[at_row, at_col].float()

            if self.compile and self.device_.type == "cuda":
                features = torch.compile(features, dynamic=True)
            self._reader = features
        return self._reader

    def _pad_multiple(self) -> int:
        return 64 if self.compile and self.device_.type == "cuda" else 1

    def _micro(self) -> int:
        if self.micro_batch_size:
            return int(self.micro_batch_size)
        return self.batch_size if self.device_.type == "cuda" else 32

    def _eval_batch(self) -> int:
        if self.eval_batch_size:
            return int(self.eval_batch_size)
        return 256 if self.device_.type == "cuda" else 64

    @overload
    def _task_data(self, data: ProbeData) -> ProbeData: ...
    @overload
    def _task_data(self, data: FreshData) -> FreshData: ...
    def _task_data(self, data):
        if not isinstance(data, (ProbeData, FreshData)):
            raise TypeError(f"expected ProbeData or FreshData, got {type(data).__name__}")
        if data.tasks != [self.task]:
            data = data.task(self.task)
        if not len(data):
            raise ValueError(f"no {self.task!r} examples in the data")
        return data

    def _check_labels(self, y: np.ndarray):
        bad = (y < 0) | (y >= self.n_classes_)
        if bad.any():
            raise ValueError(f"labels outside 0..{self.n_classes_ - 1} for task {self.task!r}")

    def _new_params(self, vocab_rows: int, d_model: int, labels: np.ndarray):
        """Fresh trainable parameters (seeded), the train-label majority class and the prior bias."""
        self.n_classes_ = n_classes(self.task)
        self._check_labels(labels)
        gen = torch.Generator().manual_seed(self.seed)
        self.params_ = ProbeParams(vocab_rows, d_model, self.rank, self.n_classes_, gen).to(self.device_)
        self._reader = None
        self.majority_class_ = int(np.bincount(labels, minlength=self.n_classes_).argmax())
        self._init_bias(labels)

    def _set_standardization(self, feats: torch.Tensor):
        if not self.standardize:
            return
        mean = feats.mean(0)
        scale = feats.std(0, unbiased=False)
        scale = scale.clamp_min(1e-4 * float(scale.median()) + 1e-12)  # (near-)constant dimensions stay finite
        self.params_.mean.copy_(mean.to(self.device_))
        self.params_.scale.copy_(scale.to(self.device_))

    def _optimizer(self):
        p = self.params_
        decay = [p.head.weight] + ([p.U, p.V] if self.rank else [])
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": [p.head.bias], "weight_decay": 0.0}],
            lr=self.lr,
            betas=self.betas,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / self.steps))
        return opt, sched

    def _bar(self, total: int, desc: str):
        import sys

        from tqdm import tqdm

        disable = not self.progress
        label = self.progress if isinstance(self.progress, str) else desc
        return tqdm(total=total, desc=label, file=sys.stderr, disable=disable, dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------ fit
    def fit(self, model, data: ProbeData | FreshData) -> VProbe:
        """Train U, V and the head on ``data`` (rank 0: the head alone, on features computed once).

        The model's weights are never modified (its ``requires_grad`` flags are restored after fitting); with
        ``device`` set, the model is moved to that device. Whatever an earlier fit learned is forgotten first.

        Parameters
        ----------
        model : transformers.PreTrainedModel or str or os.PathLike
            The frozen language model, or a checkpoint folder to load it from.
        data : ProbeData or FreshData
            Training examples; those of other tasks are ignored. A :class:`~probekit.probe.data.FreshData`
            gives new examples every epoch (the rank > 0 probe reads epoch after epoch; a rank-0 probe trains on
            its first epoch's frozen features only).

        Returns
        -------
        VProbe
            ``self``, fitted.

        Raises
        ------
        ValueError
            Invalid parameters, no example of ``task`` in ``data`` or labels outside the task's classes.
        """
        self._validate_params()
        self._clear_fitted()
        self.model_path_ = None
        model = self._attach(model)
        data = self._task_data(data)
        labels = np.asarray(data.labels, dtype=np.int64)
        self._new_params(model.get_input_embeddings().num_embeddings, model.config.hidden_size, labels)
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        start = time.perf_counter()
        self.epochs_ = 1
        try:
            if self.rank == 0:
                feats = self._collect(data)
                self._fit_head(feats, labels)
            else:
                self._fit_full(data, labels)
        finally:
            for p, f in zip(model.parameters(), flags):
                p.requires_grad_(f)
        self.fit_seconds_ = time.perf_counter() - start
        self.n_train_ = len(data)
        self.examples_per_second_ = self.steps * self.batch_size / self.fit_seconds_ if self.rank else None
        return self

    def fit_features(
        self, features: torch.Tensor, labels, model=None, standardize_on: torch.Tensor | None = None
    ) -> VProbe:
        """Rank-0 fit of the head from precomputed [END] features (the per-layer cache path).

        Parameters
        ----------
        features : torch.Tensor
            ``(N, d)`` hidden states of the unmodified model at the final ``[END]`` (see
            :func:`probekit.probe.layers.collect_features`).
        labels : array-like of int
            ``(N,)`` class labels.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            The model the features came from, attached for later :meth:`predict` calls; without it the probe
            predicts from features only (:meth:`predict_features`) and ``layer_name_`` is ``layer`` when that is
            a string.
        standardize_on : torch.Tensor, optional
            Features to measure the fixed input standardisation on (default ``features``); the online code (MDL)
            passes all training features, which need no label, so small prefixes get a sane one.

        Returns
        -------
        VProbe
            ``self``, fitted.
        """
        self._validate_params()
        if self.rank:
            raise ValueError("fit_features is the rank-0 path; use fit(model, data) for rank > 0")
        self._clear_fitted()
        self.model_path_ = None
        if model is not None:
            self._attach(model)
        else:
            self.model_ = None
            self.device_ = torch.device(self.device) if self.device else features.device
            self.layer_name_ = self.layer if isinstance(self.layer, str) else None
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        self._new_params(0, features.shape[1], labels)
        start = time.perf_counter()
        self._fit_head(features, labels, standardize_on)
        self.fit_seconds_ = time.perf_counter() - start
        self.n_train_ = len(labels)
        self.epochs_ = 1
        self.examples_per_second_ = None
        return self

    def _init_bias(self, labels: np.ndarray):
        """Head bias = log prior of the train labels (add-one smoothed): the untrained probe answers the
        majority class. With zero-mean (standardised) features only the bias can carry the prior, and at
        LR 0.002 it moves by about 0.002 per step: learning log-odds of 4 (``value``: 76% unknown) from 0 would
        take thousands of steps."""
        counts = np.bincount(labels, minlength=self.n_classes_).astype(np.float64) + 1.0
        prior = np.log(counts / counts.sum())
        with torch.no_grad():
            self.params_.head.bias.copy_(torch.as_tensor(prior - prior.mean(), dtype=torch.float32))

    def _fit_head(self, feats: torch.Tensor, labels: np.ndarray, standardize_on: torch.Tensor | None = None):
        with _cpu_threads(1 if self.device_.type == "cpu" else None):
            self._fit_head_loop(feats, labels, standardize_on)

    def _fit_head_loop(self, feats: torch.Tensor, labels: np.ndarray, standardize_on: torch.Tensor | None = None):
        feats = feats.to(self.device_, torch.float32)
        self._set_standardization(feats if standardize_on is None else standardize_on.to(self.device_, torch.float32))
        y = torch.as_tensor(labels, device=self.device_)
        opt, sched = self._optimizer()
        gen = np.random.default_rng(self.seed)
        order, pos = gen.permutation(len(y)), 0
        self.history_ = []
        with self._bar(self.steps, f"probe {self.task}") as bar:
            for _ in range(self.steps):
                idx, order, pos = _next_batch(order, pos, self.batch_size, lambda: gen.permutation(len(y)))
                idx_t = torch.as_tensor(idx, device=self.device_)
                loss = F.cross_entropy(self.params_.logits(feats[idx_t]), y[idx_t])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                self.history_.append(float(loss.detach()))
                bar.update()

    def _fit_full(self, data: ProbeData | FreshData, labels: np.ndarray):
        gen = np.random.default_rng(self.seed)
        n = len(labels)
        sample = gen.choice(n, size=min(n, STANDARDIZE_EXAMPLES), replace=False)
        with torch.no_grad():  # U = 0 here: the unmodified model's features
            self._set_standardization(self._collect(data.select(np.sort(sample))))
        features = self._features_fn()
        opt, sched = self._optimizer()
        amp = self._amp_dtype()
        micro = self._micro()
        packed = self.batches == "problems"
        batches = _fresh_batches(data, self.batch_size, gen, packed) if isinstance(data, FreshData) else None
        if batches is None:
            lengths, y_all = data.lengths, torch.as_tensor(labels)
            draw = _epoch_orders(data.ids, packed)  # the problem groups are found once, not every epoch
            order, pos = draw(gen), 0
        self.history_ = []
        self.epochs_ = 1
        with self._bar(self.steps, f"probe {self.task} r={self.rank}") as bar:
            for _ in range(self.steps):
                if batches is None:
                    idx, order, pos = _next_batch(order, pos, self.batch_size, lambda: draw(gen))
                    ids_of = data.ids
                else:
                    epoch, ids_of, lengths, y_all, idx = next(batches)
                    self.epochs_ = epoch + 1
                if not packed:  # packed chunks keep the problems together instead
                    idx = idx[np.argsort(lengths[idx], kind="stable")]
                opt.zero_grad(set_to_none=True)
                total = 0.0
                for k in range(0, len(idx), micro):
                    chunk = idx[k : k + micro]
                    with torch.autocast(self.device_.type, dtype=amp, enabled=amp is not None):
                        feats, chunk = self._chunk_features(features, [ids_of[i] for i in chunk], chunk, packed)
                    y = y_all[chunk].to(self.device_, non_blocking=True)
                    loss = F.cross_entropy(self.params_.logits(feats), y, reduction="sum") / len(idx)
                    loss.backward()
                    total += float(loss.detach())
                opt.step()
                sched.step()
                self.history_.append(total)
                bar.update()
                bar.set_postfix(loss=f"{total:.3f}", refresh=False)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _collect(self, data: ProbeData | FreshData) -> torch.Tensor:
        """[END] features ``(N, d)`` float32 with the current embedding update, in data order."""
        features = self._features_fn()
        amp = self._amp_dtype()
        packed = self.backend == "hf"
        bs = self._eval_batch()
        order = np.concatenate(packing.problem_groups(data.ids)) if packed else np.argsort(data.lengths, kind="stable")
        out = torch.empty(len(data), self.model_.config.hidden_size, dtype=torch.float32, device=self.device_)
        for k in range(0, len(order), bs):
            chunk = order[k : k + bs]
            with torch.autocast(self.device_.type, dtype=amp, enabled=amp is not None):
                feats, chunk = self._chunk_features(features, [data.ids[i] for i in chunk], chunk, packed)
            out[torch.as_tensor(chunk, device=self.device_)] = feats
        return out

    def _chunk_features(self, features, seqs, chunk: np.ndarray, packed: bool):
        """``(features, chunk)`` of the examples ``seqs`` (indices ``chunk``), run packed or right-padded; the
        features come in the order of the returned indices."""
        if not packed:
            ids, end = pad_batch(seqs, _pad_id(self.model_), self._pad_multiple(), self.device_)
            return features(ids, torch.arange(len(seqs), device=self.device_), end), chunk
        batch = packing.packed_batch(packing.pack_rows(seqs), _pad_id(self.model_), self.device_)
        feats = features(batch.ids, batch.at_row, batch.at_col, batch.allowed, batch.positions)
        return feats, chunk[batch.example.cpu().numpy()]

    def _require_fit(self):
        if "params_" not in vars(self):
            raise NotFittedError(
                "this VProbe is not fitted yet: call fit(model, data) or fit_features(features, "
                "labels) first, or VProbe.load a saved one"
            )

    @torch.no_grad()
    def transform(self, data: ProbeData, model=None) -> torch.Tensor:
        """The hidden states the head reads for the task's examples of ``data``: the ``[END]`` state at the read
        layer, with the fitted embedding update, before the head's standardisation.

        Parameters
        ----------
        data : ProbeData
            Examples; those of other tasks are ignored.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            As in :meth:`decision_function`.

        Returns
        -------
        torch.Tensor
            ``(N, d_model)`` float32, in data order, on the probe's device.
        """
        self._require_fit()
        self._model(model)
        return self._collect(self._task_data(data))

    @torch.no_grad()
    def decision_function(self, data: ProbeData, model=None) -> np.ndarray:
        """Logits of the task's examples of ``data``.

        Parameters
        ----------
        data : ProbeData
            Examples; those of other tasks are ignored.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            A model (or checkpoint) to attach first; default: the attached one, else the checkpoint recorded at
            ``fit``.

        Returns
        -------
        numpy.ndarray
            ``(N, n_classes_)`` float logits, in data order.
        """
        self._require_fit()
        self._model(model)
        data = self._task_data(data)
        return self.params_.logits(self._collect(data)).cpu().numpy()

    def predict(self, data: ProbeData, model=None) -> np.ndarray:
        """Predicted classes of the task's examples of ``data``.

        Parameters
        ----------
        data, model
            As for :meth:`decision_function`.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` int classes (``argmax`` of the logits), in data order.
        """
        return self.decision_function(data, model).argmax(1)

    @torch.no_grad()
    def _feature_logits(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        return self.params_.logits(features.to(self.params_.mean.device))

    def predict_features(self, features: torch.Tensor) -> np.ndarray:
        """Predicted classes from precomputed [END] features (rank 0).

        Parameters
        ----------
        features : torch.Tensor
            ``(N, d)`` hidden states, as given to :meth:`fit_features`.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` int classes.
        """
        return self._feature_logits(features).argmax(1).cpu().numpy()

    def predict_log_proba_features(self, features: torch.Tensor) -> np.ndarray:
        """Natural-log class probabilities from precomputed [END] features (rank 0; the online code).

        Parameters
        ----------
        features
            As for :meth:`predict_features`.

        Returns
        -------
        numpy.ndarray
            ``(N, n_classes_)`` float64 log probabilities.
        """
        return torch.log_softmax(self._feature_logits(features).double(), dim=1).cpu().numpy()

    def score(self, data: ProbeData, model=None) -> float:
        """Accuracy on the task's examples of ``data`` (the scikit-learn ``score`` of a classifier).

        Parameters
        ----------
        data : ProbeData
            Labelled examples; those of other tasks are ignored.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            As for :meth:`decision_function`.

        Returns
        -------
        float
            The share of examples predicted right: the ``accuracy`` column of :meth:`score_table`.
        """
        data = self._task_data(data)
        return float(np.mean(self.predict(data, model) == data.labels))

    def score_table(self, data: ProbeData, model=None, bootstrap: int = stats.N_BOOT):
        """All the scores of the task's examples of ``data``, with bootstrap intervals over problems.

        Parameters
        ----------
        data : ProbeData
            Labelled examples (their ``meta`` gives the problems and whether A is necessary); those of other
            tasks are ignored.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            As for :meth:`decision_function`.
        bootstrap : int, default 1000
            Resamples of the intervals, seeded by the probe's ``seed``; 0: no interval (NaN).

        Returns
        -------
        pandas.DataFrame
            One row of :func:`score_row`: task, layer, rank, accuracy, ci_low, ci_high, accuracy_pos,
            accuracy_neg, majority, n, ... (module doc). The control-task columns are NaN here (see
            :func:`probekit.probe.layers.probe_layers`).
        """
        data = self._task_data(data)
        return self.score_predictions(
            self.predict(data, model),
            data.labels,
            data.meta.get("necessary"),
            groups=stats.problem_groups(data.meta, len(data)),
            bootstrap=bootstrap,
        )

    def score_predictions(
        self,
        pred,
        labels,
        necessary=None,
        groups=None,
        bootstrap: int = stats.N_BOOT,
        control_pred=None,
        control_labels=None,
        control_majority_class=None,
        control_mask=None,
    ):
        """The :meth:`score_table` row of given predictions (:func:`score_row` with this probe's task, layer,
        rank, seed and training majority class).

        Parameters
        ----------
        pred, labels : array-like of int
            ``(N,)`` predicted and true classes.
        necessary : array-like of bool, optional
            Whether each example's parameter A is necessary (adds the accuracy on unnecessary ones).
        groups : array-like of int, optional
            Each example's problem (:func:`stats.problem_groups`); None: one group per example.
        bootstrap : int, default 1000
            Resamples of the intervals over groups (0: none).
        control_pred, control_labels : array-like of int, optional
            The control-task probe's predictions and the control labels of the same examples.
        control_majority_class : int, optional
            The majority class of the control training labels.
        control_mask : array-like of bool, optional
            The examples the control task is scored on (keys seen in training); None: all.

        Returns
        -------
        pandas.DataFrame
            One row of :func:`score_row`.
        """
        import pandas as pd

        self._require_fit()
        return pd.DataFrame(
            [
                score_row(
                    self.task,
                    pred,
                    labels,
                    self.majority_class_,
                    necessary,
                    groups=groups,
                    bootstrap=bootstrap,
                    bootstrap_seed=self.seed,
                    control_pred=control_pred,
                    control_labels=control_labels,
                    control_majority_class=control_majority_class,
                    control_mask=control_mask,
                    layer=hooks.layer_label(self.layer_name_) if self.layer_name_ else self.layer,
                    rank=self.rank,
                )
            ]
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``probe.safetensors`` (U, V, head, standardisation) and ``probe.json`` (everything else).

        Parameters
        ----------
        directory : str or os.PathLike
            The folder to write (created if missing).

        Returns
        -------
        pathlib.Path
            ``directory``.
        """
        from safetensors.torch import save_file

        from probekit.records import write_atomic

        self._require_fit()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.params_.state_dict().items()}
        save_file(tensors, str(out / PROBE_WEIGHTS))
        config = self.model_.config if self.model_ is not None else None
        record = {
            "format": "probekit-vprobe",
            "version": 1,
            "hparams": self._hparams(),
            "layer_name": self.layer_name_,
            "n_classes": self.n_classes_,
            "d_model": int(self.params_.head.in_features),
            "vocab_rows": int(self.params_.U.shape[0]) if self.rank else None,
            "majority_class": self.majority_class_,
            "model_path": self.model_path_,
            "model": None
            if config is None
            else {"model_type": config.model_type, "n_layer": config.num_hidden_layers, "d_model": config.hidden_size},
            "fit": {
                "n_train": getattr(self, "n_train_", None),
                "seconds": getattr(self, "fit_seconds_", None),
                "final_loss": self.history_[-1] if self.history_ else None,
            },
        }
        write_atomic(out / PROBE_CONFIG, json.dumps(record, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, model=None, device: str | None = None) -> VProbe:
        """Load a probe written by :meth:`save`.

        Parameters
        ----------
        directory : str or os.PathLike
            The folder :meth:`save` wrote.
        model : transformers.PreTrainedModel or str or os.PathLike, optional
            The model (or checkpoint) to attach now; without it the checkpoint path recorded at ``fit`` is
            opened at the first prediction when it exists, else a model must be passed then.
        device : str, optional
            Where to run (default: CPU, or the model's device once one is attached).

        Returns
        -------
        VProbe
            A fitted probe (``history_`` holds the final training loss only).
        """
        from safetensors.torch import load_file

        path = Path(directory)
        record = json.loads((path / PROBE_CONFIG).read_text())
        if record.get("format") != "probekit-vprobe":
            raise ValueError(f"{path} does not hold a probekit V-probe")
        hp = dict(record["hparams"])
        hp["betas"] = tuple(hp["betas"])
        if device is not None:
            hp["device"] = device
        probe = cls(**hp)
        tensors = load_file(str(path / PROBE_WEIGHTS))
        rows = record["vocab_rows"] or 0
        probe.n_classes_ = record["n_classes"]
        probe.params_ = ProbeParams(rows, record["d_model"], probe.rank, probe.n_classes_)
        probe.params_.load_state_dict(tensors)
        probe.majority_class_ = record["majority_class"]
        probe.layer_name_ = record["layer_name"]
        probe.model_path_ = record.get("model_path")
        probe.history_ = [record["fit"]["final_loss"]] if record["fit"].get("final_loss") is not None else []
        probe.device_ = torch.device(device or "cpu")
        probe.params_.to(probe.device_)
        probe.model_, probe._reader = None, None
        if model is not None:
            probe._model(model)
        return probe

    def __repr__(self) -> str:
        state = "fitted" if "params_" in vars(self) else "unfitted"
        return f"VProbe(task={self.task!r}, rank={self.rank}, layer={self.layer!r}, steps={self.steps}, {state})"


@contextlib.contextmanager
def _cpu_threads(n: int | None):
    """Run with ``n`` intra-op threads (restored after). The head-only loop does tiny matmuls, where
    multi-threading costs more than it gains (up to 30x slower on a loaded 2-core machine)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _pad_id(model) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _epoch_orders(seqs, packed: bool):
    """``draw(gen) -> order``: an epoch's order of the examples ``seqs``, a random permutation, or with ``packed``
    one that keeps each problem's examples together (:func:`probekit.probe.packing.problem_groups`, found once
    here): the groups and the examples inside each in random order."""
    if not packed:
        return lambda gen: gen.permutation(len(seqs))
    groups = packing.problem_groups(seqs)
    return lambda gen: np.concatenate([gen.permutation(groups[g]) for g in gen.permutation(len(groups))])


def _fresh_batches(data: FreshData, size: int, gen: np.random.Generator, packed: bool = False):
    """Endless ``(epoch, ids, lengths, labels, batch indices)`` over the epochs of ``data``: each epoch in an
    order of :func:`_epoch_orders`, ``size`` examples per batch; a batch never mixes epochs (an epoch's last,
    short batch is dropped, unless the epoch is shorter than one batch)."""
    epoch = 0
    while True:
        part = data.epoch(epoch)
        if not len(part):
            raise ValueError(f"epoch {epoch} of the fresh training data has no {data.task_name or ''} example")
        ids, lengths, labels = part.ids, part.lengths, torch.as_tensor(np.asarray(part.labels, dtype=np.int64))
        order = _epoch_orders(ids, packed)(gen)
        stop = max(len(order) - size + 1, 1)
        for pos in range(0, stop, size):
            yield epoch, ids, lengths, labels, order[pos : pos + size]
        epoch += 1


def _next_batch(order: np.ndarray, pos: int, size: int, shuffle):
    """The next ``size`` indices of an endless sequence of epoch orders (``shuffle()`` draws the next one)."""
    out = []
    while size:
        take = order[pos : pos + size]
        out.append(take)
        size -= len(take)
        pos += len(take)
        if pos >= len(order):
            order, pos = shuffle(), 0
    return np.concatenate(out), order, pos


def score_row(
    task: str,
    pred,
    labels,
    majority_class: int,
    necessary=None,
    *,
    groups=None,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    level: float = stats.LEVEL,
    control_pred=None,
    control_labels=None,
    control_majority_class: int | None = None,
    control_mask=None,
    **extra,
) -> dict:
    """The score columns for predictions ``pred`` against ``labels`` (module doc); ``necessary`` (one bool per
    example: is its parameter A needed for the answer) adds the accuracy on unnecessary parameters.

    ``bootstrap`` > 0 adds percentile intervals (``level``, default 95%) over resampled ``groups`` (problem
    codes, :func:`stats.problem_groups`; None: each example its own group), seeded by ``bootstrap_seed``; with
    ``bootstrap=0`` the interval columns are NaN. ``control_pred`` / ``control_labels`` (the control probe's
    predictions and the control-task labels of the same examples) fill ``control_accuracy``,
    ``control_majority`` (majority baseline of the control labels for ``control_majority_class``, the
    majority class of the control *training* labels) and ``selectivity``, with intervals on the same
    resamples, on the examples of ``control_mask`` (control keys seen in training; None: all), with
    ``control_seen`` = their share, ``n_control`` their number and ``accuracy_seen`` the real probe's accuracy on
    them; ``selectivity`` = accuracy_seen - control accuracy. ``extra`` columns (layer, rank, ...) follow ``task``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    n = len(labels)
    correct = pred == labels
    binary = task != "value"
    pos, neg = labels == 1, labels == 0
    unnecessary = ~np.asarray(necessary, dtype=bool) if necessary is not None else np.zeros(n, dtype=bool)
    has_control = control_pred is not None and control_labels is not None
    control_correct = None
    seen = np.ones(n, dtype=bool) if control_mask is None else np.asarray(control_mask, dtype=bool)
    if has_control:
        control_pred, control_labels = np.asarray(control_pred), np.asarray(control_labels)
        if len(control_pred) != n or len(control_labels) != n or len(seen) != n:
            raise ValueError("control predictions, labels and mask must cover the same examples as the labels")
        control_correct = control_pred == control_labels

    def mean(mask, any_task=False):
        return float(correct[mask].mean()) if (binary or any_task) and mask.any() else math.nan

    accuracy = float(correct.mean()) if n else math.nan
    on_seen = control_correct is not None and bool(seen.any())
    control_accuracy = float(control_correct[seen].mean()) if control_correct is not None and on_seen else math.nan
    seen_accuracy = float(correct[seen].mean()) if on_seen else math.nan
    nan2 = (math.nan, math.nan)
    ci = dict.fromkeys(("all", "pos", "neg", "unnecessary", "control", "selectivity"), nan2)
    if bootstrap and n:
        columns = {"all": (correct, None), "unnecessary": (correct, unnecessary)}
        if binary:
            columns.update(pos=(correct, pos), neg=(correct, neg))
        if has_control:
            columns.update(control=(control_correct, seen), seen=(correct, seen))
        samples = stats.bootstrap_means(columns, groups, int(bootstrap), bootstrap_seed)
        if has_control:
            samples["selectivity"] = samples.pop("seen") - samples["control"]
        for key, values in samples.items():
            ci[key] = stats.percentile_interval(values, level)
        if necessary is None:
            ci["unnecessary"] = nan2
    n_problems = len(np.unique(groups)) if groups is not None else None

    return {
        "task": task,
        **extra,
        "accuracy": accuracy,
        "ci_low": ci["all"][0],
        "ci_high": ci["all"][1],
        "accuracy_pos": mean(pos),
        "ci_low_pos": ci["pos"][0],
        "ci_high_pos": ci["pos"][1],
        "accuracy_neg": mean(neg),
        "ci_low_neg": ci["neg"][0],
        "ci_high_neg": ci["neg"][1],
        "majority": float((labels == majority_class).mean()) if n else math.nan,
        "control_accuracy": control_accuracy,
        "ci_low_control": ci["control"][0],
        "ci_high_control": ci["control"][1],
        "control_majority": (
            float((control_labels[seen] == control_majority_class).mean())
            if on_seen and control_majority_class is not None
            else math.nan
        ),
        "accuracy_seen": seen_accuracy,
        "control_seen": float(seen.mean()) if has_control and n else math.nan,
        "n_control": int(seen.sum()) if has_control else None,
        "selectivity": seen_accuracy - control_accuracy if has_control else math.nan,
        "ci_low_selectivity": ci["selectivity"][0],
        "ci_high_selectivity": ci["selectivity"][1],
        "n": int(n),
        "n_pos": int(pos.sum()) if binary else None,
        "n_problems": n_problems,
        "accuracy_unnecessary": mean(unnecessary, any_task=True),
        "ci_low_unnecessary": ci["unnecessary"][0],
        "ci_high_unnecessary": ci["unnecessary"][1],
        "n_unnecessary": int(unnecessary.sum()) if necessary is not None else None,
        "bootstrap": int(bootstrap) if n else 0,
    }
