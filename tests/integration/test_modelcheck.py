"""Load-time model checks: healthy checkpoints pass, each corruption fails the check meant to catch it."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("transformer_lens.model_bridge")

from shipped import DEFAULT_REASONER  # noqa: E402

from probekit import modelcheck  # noqa: E402
from probekit.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from probekit.modeling import build_model, load_model_config  # noqa: E402

SHIPPED = DEFAULT_REASONER
FAST = {"tokenizer", "config", "weights", "save_reload"}
ALL = FAST | {"residual_stream", "bridge_logits"}


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def healthy(request, tmp_path_factory, tok):
    """A tiny checkpoint saved as the training loop saves one (training config, data preset)."""
    arch = request.param
    model = build_model(load_model_config(f"{arch}-tiny"), tok, seed=2).eval()
    provenance = {
        "training_config": {
            "model": {"name": f"{arch}-tiny", "arch": None, "seed": 2},
            "data": {"preset": "med", "max_op": 4, "format": "pq", "context": 512},
        },
        "data_preset": {"name": "med-op4", "max_op": 4, "max_edge": 20},
        "step": 0,
    }
    return save_checkpoint(model, tok, tmp_path_factory.mktemp(arch) / "ckpt", provenance)


def _copy(healthy, tmp_path):
    return shutil.copytree(healthy, tmp_path / "ckpt")


def _by_name(results):
    return {r.name: r for r in results}


def _only_failure(results, name):
    """``name`` failed and every other check passed."""
    by_name = _by_name(results)
    assert by_name[name].passed is False, by_name[name]
    assert all(r.passed for r in results if r.name != name), [r for r in results if not r.passed]
    return by_name[name]


def test_a_healthy_checkpoint_passes_every_check(healthy):
    results = modelcheck.run_checks(healthy)
    assert [r.name for r in results] == list(modelcheck.CHECKS) and set(modelcheck.CHECKS) == ALL
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert {r.name for r in results if r.fast} == FAST
    by_name = _by_name(results)
    assert by_name["weights"].measured <= modelcheck.WEIGHTS_TOLERANCE
    assert by_name["bridge_logits"].measured <= modelcheck.BRIDGE_TOLERANCE
    assert "matches" in by_name["config"].detail and "recorded at save time" in by_name["tokenizer"].detail
    assert [r.name for r in modelcheck.require_healthy(healthy)] == [n for n in modelcheck.CHECKS if n in FAST]


def test_a_checkpoint_loaded_with_eager_attention_round_trips_with_eager_attention():
    """Probes load with eager attention on a CPU; the save/reload check must compare eager with eager (on the
    shipped model eager and SDPA logits differ by ~5e-6, above the reload tolerance)."""
    model, tokenizer, provenance = load_checkpoint(SHIPPED, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    by_name = _by_name(modelcheck.require_healthy((model, tokenizer, provenance)))
    assert by_name["save_reload"].passed and by_name["save_reload"].measured <= modelcheck.RELOAD_TOLERANCE


def test_the_shipped_checkpoint_passes_every_check():
    by_name = _by_name(modelcheck.run_checks(SHIPPED))
    assert by_name.keys() == ALL
    assert all(r.passed for r in by_name.values()), by_name
    assert by_name["weights"].measured <= modelcheck.WEIGHTS_TOLERANCE  # the fingerprint written at save time
    assert "gpt2-8-2" in by_name["config"].detail and "med-op4-ip12" in by_name["config"].detail


def test_a_rotary_buffer_corrupted_in_memory_fails(healthy):
    model, tok, provenance = load_checkpoint(healthy)
    rotary = next(m for m in model.modules() if "inv_freq" in m._buffers)
    with torch.no_grad():
        rotary.inv_freq.mul_(1.01)
    results = modelcheck.run_checks((model, tok, provenance), fast_only=True)
    by_name = _by_name(results)
    assert by_name["save_reload"].passed is False and by_name["save_reload"].measured > modelcheck.RELOAD_TOLERANCE
    assert "inv_freq differs from the config-implied value" in by_name["save_reload"].detail
    assert by_name["weights"].passed is False and "rotary_emb.inv_freq" in by_name["weights"].detail
    assert by_name["tokenizer"].passed and by_name["config"].passed
    assert torch.equal(rotary.inv_freq, rotary.original_inv_freq * 1.01)  # the check leaves the model as it was
    with pytest.raises(modelcheck.ModelCheckError, match=r"(?s)save_reload: measured .*--skip-checks") as err:
        modelcheck.require_healthy((model, tok, provenance))
    assert isinstance(err.value, ValueError) and {r.name for r in err.value.results} == FAST


def test_two_blocks_swapped_on_disk_fail_the_weights_check(healthy, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(healthy, tmp_path)
    tensors = load_file(path / "model.safetensors")
    swap = {".layers.0.": ".layers.1.", ".layers.1.": ".layers.0."}
    swapped = {}
    for name, tensor in tensors.items():
        for a, b in swap.items():
            if a in name:
                name = name.replace(a, b)
                break
        swapped[name] = tensor
    save_file(swapped, path / "model.safetensors", metadata={"format": "pt"})
    weights = _only_failure(modelcheck.run_checks(path, fast_only=True), "weights")
    assert weights.measured > 1e-4
    assert "tensors differ from the save-time fingerprint (in blocks 0, 1)" in weights.detail


@pytest.mark.parametrize("corruption", ["ids swapped", "marker not special", "marker removed"])
def test_a_wrong_tokenizer_fails_the_tokenizer_check(healthy, tmp_path, corruption):
    path = _copy(healthy, tmp_path)
    data = json.loads((path / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    if corruption == "ids swapped":  # same words, two ids exchanged: round trips still hold
        vocab["▁12"], vocab["▁13"] = vocab["▁13"], vocab["▁12"]
    else:
        data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "[MID]"]
        if corruption == "marker removed":
            del vocab["[MID]"]
    (path / "tokenizer.json").write_text(json.dumps(data))
    check = _only_failure(modelcheck.run_checks(path, fast_only=True), "tokenizer")
    expected = {
        "ids swapped": "not the tokenizer recorded at save time",
        "marker not special": "[MID] is not a single token",
        "marker removed": "load_checkpoint refuses the folder",
    }[corruption]
    assert expected in check.detail


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("partial_rotary_factor", 0.25, "rotary fraction 0.25"),
        ("max_position_embeddings", 128, "fit in max_position_embeddings=128"),
    ],
)
def test_a_wrong_config_fails_the_config_check(healthy, tmp_path, key, value, message):
    path = _copy(healthy, tmp_path)
    config = json.loads((path / "config.json").read_text())
    if key == "partial_rotary_factor":
        config["rope_parameters"][key] = value
    else:
        config[key] = value
    (path / "config.json").write_text(json.dumps(config))
    results = modelcheck.run_checks(path, fast_only=True)
    if key == "partial_rotary_factor" and config["model_type"] == "llama":
        assert all(r.passed for r in results)  # LLaMA rotates every dimension whatever the config says
        return
    if key == "partial_rotary_factor":  # the rotary buffers then differ from those recorded at save time too
        weights = _by_name(results)["weights"]
        assert weights.passed is False and "rotary_emb.inv_freq" in weights.detail
        results = [r for r in results if r.name != "weights"]
    check = _only_failure(results, "config")
    assert message in check.detail
    if key == "max_position_embeddings":
        assert "128 but" in check.detail and "shorter than the training window" in check.detail


@pytest.mark.parametrize("where", ["block", "attention"])
def test_a_leftover_forward_hook_fails_the_hook_checks(healthy, where):
    """A hook left on the model (e.g. by an earlier analysis) changes what the probes read: on a block it breaks
    the residual stream sum, on an attention module the HF logits stop matching the bridge's."""
    from probekit.probe import hooks

    model, tok, provenance = load_checkpoint(healthy)
    layer = hooks.model_parts(model).layers[1]
    if where == "block":
        layer.register_forward_hook(lambda mod, args, out: out + 0.5)
    else:
        attn = getattr(layer, "attention", None) or layer.self_attn
        attn.register_forward_hook(lambda mod, args, out: (out[0] * 1.5, *out[1:]))
    by_name = _by_name(modelcheck.run_checks((model, tok, provenance)))
    failed = {name for name, r in by_name.items() if not r.passed}
    if where == "block":
        assert "residual_stream" in failed and "blocks.1.hook_resid_post" in by_name["residual_stream"].detail
    else:
        assert by_name["bridge_logits"].measured > modelcheck.BRIDGE_TOLERANCE
        assert failed == {"bridge_logits", "save_reload"}  # the reloaded model has no hook either


def test_inspect_command_prints_a_table_and_json_and_sets_the_exit_status(healthy, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="probekit")
    modelcheck.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", str(healthy), "--fast", "--json"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["checkpoint"] == str(healthy) and report["passed"] is True
    assert {c["name"] for c in report["checks"]} == FAST and all(c["status"] == "pass" for c in report["checks"])
    assert {"measured", "threshold", "detail", "fast"} <= report["checks"][0].keys()
    assert "save_reload" in captured.err and "threshold" in captured.err

    path = _copy(healthy, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 128
    (path / "config.json").write_text(json.dumps(config))
    args = parser.parse_args(["inspect", str(path), "--fast"])
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "FAIL" in captured.err


def test_inspect_fails_a_checkpoint_without_fingerprints_unless_told_otherwise(healthy, tmp_path, capsys):
    """Without a recorded fingerprint, changed weights or swapped tokenizer ids would pass unseen: ``probekit
    inspect`` fails such a folder; ``--allow-missing-fingerprint`` skips the two comparisons instead."""
    path = _copy(healthy, tmp_path)
    provenance = json.loads((path / "probekit.json").read_text())
    del provenance["fingerprint"]
    (path / "probekit.json").write_text(json.dumps(provenance))
    parser = argparse.ArgumentParser(prog="probekit")
    modelcheck.register(parser.add_subparsers(dest="command"))

    args = parser.parse_args(["inspect", str(path), "--fast", "--json"])
    assert args.func(args) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["weights"]["status"] == "FAIL" and "--allow-missing-fingerprint" in checks["weights"]["detail"]
    assert checks["tokenizer"]["status"] == "FAIL" and "no tokenizer fingerprint" in checks["tokenizer"]["detail"]
    assert checks["config"]["status"] == "pass" and checks["save_reload"]["status"] == "pass"

    args = parser.parse_args(["inspect", str(path), "--fast", "--json", "--allow-missing-fingerprint"])
    assert args.func(args) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["weights"]["status"] == "skipped" and checks["tokenizer"]["status"] == "pass"
    # the load-time checks other commands run keep skipping (a foreign folder still evaluates)
    assert {r.name: r.passed for r in modelcheck.require_healthy(path)}["weights"] is None
