"""The model folders probekit ships, as the tests name them: the one place that says which is the default."""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"
REASONER_BASE = MODELS / "igsm-med-op4-ip12-gpt2-8-2-reasoner"
"""The CPU reasoner's base run (``experiments/train/cpu-reasoner.yaml``, step 39,500)."""
REASONER_OP4W = MODELS / "igsm-med-op4-ip12-gpt2-8-2-reasoner-op4w"
"""One more leg of it (``experiments/train/cpu-reasoner-op4w.yaml``)."""
REASONER_OP4W_B64 = MODELS / "igsm-med-op4-ip12-gpt2-8-2-reasoner-op4w-b64"
"""One more leg of that (``experiments/train/cpu-reasoner-op4w-b64.yaml``)."""
REASONER_OP4W_B64_S4200 = MODELS / "igsm-med-op4-ip12-gpt2-8-2-reasoner-op4w-b64-s4200"
"""That leg resumed from its step 2,300 to 4,200 (``experiments/train/cpu-reasoner-op4w-b64-s4200.yaml``)."""
REASONER_OP4W_B128 = MODELS / "igsm-med-op4-ip12-gpt2-8-2-reasoner-op4w-b128"
"""A leg from that at twice the batch (``experiments/train/cpu-reasoner-op4w-b128.yaml``)."""
DEFAULT_REASONER = REASONER_OP4W_B128
"""The model the demo, the notebooks, the experiments and the README use."""
TRAINING_CONFIGS = {
    REASONER_BASE: "experiments/train/cpu-reasoner.yaml",
    REASONER_OP4W: "experiments/train/cpu-reasoner-op4w.yaml",
    REASONER_OP4W_B64: "experiments/train/cpu-reasoner-op4w-b64.yaml",
    REASONER_OP4W_B64_S4200: "experiments/train/cpu-reasoner-op4w-b64-s4200.yaml",
    REASONER_OP4W_B128: "experiments/train/cpu-reasoner-op4w-b128.yaml",
}
"""Each shipped reasoner and the training config its ``probekit.json`` records."""
