"""GPU smoke test: the fast paths that only run on CUDA (bf16 autocast, torch.compile, fused AdamW, flash
attention through SDPA) take one training step and one rank-8 V-probe step. Skipped without CUDA; run it on a
lent GPU with ``python -m pytest -m gpu``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

REPO = Path(__file__).resolve().parents[2]


def _probekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probekit", *args], cwd=REPO, capture_output=True, text=True)


def test_one_compiled_bf16_training_step_and_one_probe_step_on_cuda(tmp_path):
    out = tmp_path / "run"
    train = _probekit(
        "train",
        "experiments/train/cpu-tiny.yaml",
        f"run.out={out}",
        "run.device=cuda",
        "run.dtype=bf16",
        "run.compile=true",
        "optim.fused=true",
        "schedule.steps=2",
        "schedule.warmup_steps=1",
        "run.checkpoint_every=2",
        "run.log_every=1",
        "--quiet",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(0 < loss < 20 for loss in losses)
    checkpoint = out / "checkpoints" / "step_000002"
    assert (checkpoint / "model.safetensors").exists()

    probe = _probekit(
        "probe",
        str(checkpoint),
        "--task",
        "nece",
        "--rank",
        "8",
        "--steps",
        "1",
        "--n-train",
        "16",
        "--n-test",
        "8",
        "--batch-size",
        "16",
        "--device",
        "cuda",
        "--amp",
        "bf16",
        "--compile",
        "--no-controls",
        "--bootstrap",
        "0",
        "--skip-checks",
        "--json",
        "--quiet",
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    rows = json.loads(probe.stdout)
    rows = rows if isinstance(rows, list) else rows.get("rows", [rows])
    assert rows and all(0.0 <= row["accuracy"] <= 1.0 for row in rows)


def test_patch_and_intervene_run_on_cuda_and_agree_with_cpu(tmp_path):
    """The causal commands on CUDA (issue 17): patching gives the CPU's restored values (fp32 weights, SDPA on
    the device), and an ablation run on CUDA returns its rows."""
    from probekit.causal.interventions import InterveneSpec, run_intervention
    from probekit.causal.patching import PatchSpec, run_patch
    from probekit.checkpoint import save_checkpoint
    from probekit.modeling import build_model, load_model_config
    from probekit.tokenizer import default_tokenizer

    tok = default_tokenizer()
    ckpt = save_checkpoint(build_model(load_model_config("gpt2-tiny"), tok, seed=0), tok, tmp_path / "ckpt", {})
    spec = dict(op=2, n=3, pair_kind="value", generate=True, max_new_tokens=24, roles=("changed", "all"))
    rows = {d: run_patch(PatchSpec(str(ckpt), device=d, **spec)) for d in ("cpu", "cuda")}
    for cpu, gpu in zip(rows["cpu"], rows["cuda"]):
        assert (cpu["point"], cpu["role"]) == (gpu["point"], gpu["role"])
        if cpu["restored"] == cpu["restored"]:  # not NaN
            assert abs(cpu["restored"] - gpu["restored"]) < 1e-3
    intervene = InterveneSpec(str(ckpt), n_random=10, n_train=4, n_test=3, steps=5, sets="2", n_eval=4,
                              max_new_tokens=24, bootstrap=0, device="cuda", progress=False)  # fmt: skip
    assert [r["direction"] for r in run_intervention(intervene)] == ["none", "probe", *["random"] * 10]
