"""FLOPs per token and model FLOPs utilisation (MFU).

Formula (PaLM, Chowdhery et al. 2022, App. B; nanoGPT's ``estimate_mfu``), for one training token
(forward + backward)::

    flops_per_token = 6 * N + 12 * L * d * T

- ``N``: the parameters that take part in matrix multiplies: every parameter of the model (attention,
  MLP, norms, biases and the output layer) except the input token-embedding table, whose forward pass is a
  lookup (a tied output layer is counted once, as the output layer);
- ``L``: layers, ``d``: hidden size (heads x head dim), ``T``: the training context (window length);
- ``12 L d T``: the attention scores and the weighted sum (QK^T and AV, forward 2 + backward 4 FLOPs per
  multiply-add, over the full T x T square: no discount for the causal mask, as PaLM and nanoGPT).

``MFU = flops_per_token * tokens_per_second / (peak_flops_per_device * world_size)``. The peak is
``run.peak_tflops`` or, by default, the dense bf16 peak of the GPU (H100 / H200 SXM: 989 TFLOP/s,
A100: 312); on CPU, or on an unknown GPU or dtype, MFU is left out (``null`` in the log).
"""

from __future__ import annotations

FORMULA = (
    "flops_per_token = 6*N + 12*L*d*T (PaLM/nanoGPT; N = parameters except the input embedding table, T = context)"
)

# dense bf16 tensor-core peaks (TFLOP/s) by device-name substring, first match wins
BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)


def matmul_params(model) -> int:
    """``N`` of the formula: all parameters except the input embedding (counted once if tied)."""
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    seen = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total if tied else total - embedding.numel()


def model_shape(model) -> tuple[int, int]:
    """(layers, hidden size) from an HF config."""
    config = model.config
    return int(config.num_hidden_layers), int(config.hidden_size)


def flops_per_token(n_params: int, n_layer: int, d_model: int, context: int) -> int:
    return 6 * n_params + 12 * n_layer * d_model * context


def default_peak_tflops(device_type: str, device_name: str | None, dtype: str) -> float | None:
    """The dense bf16 peak of a known GPU, else None (MFU omitted)."""
    if device_type != "cuda" or dtype != "bf16" or not device_name:
        return None
    for key, peak in BF16_PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None


def mfu(flops_token: int, tokens_per_second: float, peak_tflops: float | None, world_size: int = 1) -> float | None:
    if not peak_tflops or tokens_per_second <= 0:
        return None
    return flops_token * tokens_per_second / (peak_tflops * 1e12 * world_size)
