"""The optimizer: AdamW (fused on CUDA) with weight decay on matrices only.

Weight decay: on every parameter with two or more dimensions (the attention and MLP matrices, and by default
the embedding and output matrices, as Hugging Face's Trainer does), never on biases and norm weights
(``optim.decay_embeddings: false`` also exempts the embedding and output matrices).
"""

from __future__ import annotations

import torch

from probekit.train.config import OptimSection, required


def param_groups(model, weight_decay: float, decay_embeddings: bool) -> list[dict]:
    """AdamW groups: decay on matrices (see the module doc), none on vectors (biases, norm weights)."""
    skip = set()
    if not decay_embeddings:
        skip.add(id(model.get_input_embeddings().weight))
        if model.get_output_embeddings() is not None:
            skip.add(id(model.get_output_embeddings().weight))
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in skip else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def use_fused(optim: OptimSection, device: torch.device) -> bool:
    """``optim.fused``, or by default the fused AdamW kernel on CUDA only."""
    return optim.fused if optim.fused is not None else device.type == "cuda"


def build_optimizer(model, optim: OptimSection, fused: bool) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with the section's peak LR, betas and eps (the schedule sets the LR of
    every step: :func:`set_lr`)."""
    beta1, beta2 = optim.betas
    groups = param_groups(model, required(optim.weight_decay, "optim.weight_decay"), optim.decay_embeddings)
    # fused=None is AdamW's default (no fused kernel unless asked for)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=(beta1, beta2), eps=optim.eps, fused=True if fused else None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of the next step, for every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
