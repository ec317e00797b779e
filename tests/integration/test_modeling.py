"""Model shapes, HF checkpoints (exact round trip, offline loading) and TransformerLens hooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from shipped import DEFAULT_REASONER, TRAINING_CONFIGS  # noqa: E402

from probekit.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from probekit.modeling import MODELS_DIR, build_model, load_model_config  # noqa: E402

PAPER_NON_EMBEDDING_M = {  # paper-facts.md 1.11 (~12 l d^2; ours adds biases and norms)
    "gpt2-4-21": 86.7,
    "gpt2-8-15": 88.5,
    "gpt2-12-12": 84.9,
    "gpt2-16-10": 78.6,
    "gpt2-20-9": 79.6,
    "gpt2-4-30": 176.9,
    "gpt2-8-21": 173.4,
    "gpt2-12-17": 170.5,
    "gpt2-16-15": 176.9,
    "gpt2-20-13": 166.1,
}


def _prompt_ids(tok):
    prompt = "The number of each Mercy Infirmary's Red Intensive Unit equals 3. How many Red Intensive Unit does Mercy Infirmary have?"
    solution = "Define Mercy Infirmary's Red Intensive Unit as a; so a = 3."
    return torch.tensor([tok.encode_example(prompt, solution, 3)])


def test_every_shipped_shape_loads_and_matches_the_papers_sizes():
    names = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
    assert {f"{a}-{k}" for a in ("gpt2", "llama") for k in ("12-12", "tiny")} <= set(names)
    for name in names:
        cfg = load_model_config(name)
        assert cfg.name == name
    for name, millions in PAPER_NON_EMBEDDING_M.items():
        cfg = load_model_config(name)
        assert cfg.head_dim == 64 and cfg.d_model == 64 * cfg.n_head
        assert abs(cfg.non_embedding_params() / 1e6 - millions) / millions < 0.01
        llama = load_model_config(name.replace("gpt2", "llama"))
        assert abs(llama.non_embedding_params() / cfg.non_embedding_params() - 1) < 0.03


def test_bad_model_config_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: gpt2\nn_layers: 4\n")
    with pytest.raises(ValueError, match="n_layers"):
        load_model_config(bad)
    with pytest.raises(ValueError, match="known"):
        load_model_config("gpt2-999-1")
    bad.write_text("arch: mamba\n")
    with pytest.raises(ValueError, match="arch"):
        load_model_config(bad)


def test_gpt2_is_sequential_neox_with_full_rotary(tok):
    model = build_model(load_model_config("gpt2-tiny"), tok)
    assert type(model).__name__ == "GPTNeoXForCausalLM"
    assert model.config.use_parallel_residual is False
    assert model.config.rope_parameters["partial_rotary_factor"] == 1.0
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    assert model.gpt_neox.rotary_emb.inv_freq.numel() == head_dim // 2  # rotary on every dimension
    assert model.get_input_embeddings().num_embeddings % 64 == 0
    assert model.get_input_embeddings().num_embeddings >= tok.vocab_size


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_checkpoint_round_trip_is_exact(tmp_path, tok, arch):
    model = build_model(load_model_config(f"{arch}-tiny"), tok, seed=3).eval()
    ids = _prompt_ids(tok)
    with torch.no_grad():
        before = model(ids).logits
    path = save_checkpoint(model, tok, tmp_path / "ckpt", {"step": 7, "data": {"preset": "med"}})
    assert {"config.json", "model.safetensors", "tokenizer.json", "probekit.json"} <= {p.name for p in path.iterdir()}
    loaded, loaded_tok, provenance = load_checkpoint(path)
    assert provenance["step"] == 7 and "git_revision" in provenance
    assert loaded_tok.fingerprint == tok.fingerprint
    with torch.no_grad():
        after = loaded(ids).logits
    assert torch.equal(before, after)
    for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers()):
        assert torch.equal(a, b), name  # rotary inv_freq included


def test_checkpoint_loads_offline_with_plain_auto_classes(tmp_path, tok, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_checkpoint(build_model(load_model_config("gpt2-tiny"), tok), tok, tmp_path / "c", {})
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    hf_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    text = "Define Mercy Infirmary's Red Intensive Unit as a; so a = 3."
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert model.config.vocab_size >= len(hf_tok)


def test_saving_over_a_checkpoint_replaces_it_whole(tmp_path, tok):
    path = tmp_path / "c"
    save_checkpoint(build_model(load_model_config("gpt2-tiny"), tok, seed=1), tok, path, {"step": 1})
    save_checkpoint(build_model(load_model_config("gpt2-tiny"), tok, seed=2), tok, path, {"step": 2})
    assert json.loads((path / "probekit.json").read_text())["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp or old folders left


def test_foreign_llama_checkpoint_without_tokenizer_loads(tmp_path, tok, tiny_llama):
    tiny_llama(tmp_path / "llama", 1024)
    model, loaded_tok, provenance = load_checkpoint(tmp_path / "llama")
    assert provenance == {} and loaded_tok.vocab_size == tok.vocab_size
    tiny_llama(tmp_path / "small", 100, num_hidden_layers=1, max_position_embeddings=2048)
    with pytest.raises(ValueError, match="embeds only 100"):
        load_checkpoint(tmp_path / "small")


def test_transformer_bridge_hooks_match_hf_and_pass_gradients(tmp_path, tok):
    bridge_mod = pytest.importorskip("transformer_lens.model_bridge")
    model = build_model(load_model_config("gpt2-tiny"), tok, seed=5).eval()
    path = save_checkpoint(model, tok, tmp_path / "c", {})
    bridge = bridge_mod.TransformerBridge.boot_transformers(str(path), device="cpu")
    ids = _prompt_ids(tok)
    logits, cache = bridge.run_with_cache(ids)
    with torch.no_grad():
        reference = model(ids).logits
    assert torch.allclose(logits, reference, atol=1e-5)
    names = {"embed.hook_out", "ln_final.hook_out"} | {f"blocks.{i}.hook_resid_post" for i in range(2)}
    assert names <= set(cache.keys())

    for p in bridge.parameters():
        p.requires_grad_(False)
    delta = torch.zeros(ids.shape[1], model.config.hidden_size, requires_grad=True)
    frozen = {k: v.clone() for k, v in bridge.state_dict().items()}
    out = bridge.run_with_hooks(ids, fwd_hooks=[("embed.hook_out", lambda act, hook: act + delta)])
    out[0, -1].sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert all(torch.equal(v, bridge.state_dict()[k]) for k, v in frozen.items())


@pytest.mark.parametrize("folder", list(TRAINING_CONFIGS), ids=lambda folder: folder.name)
def test_a_shipped_reasoner_is_the_run_its_training_config_describes(folder):
    """The model card's reproduce command is true: ``probekit.json`` records the card's training config (only the
    run folder, the progress bar and where the ``--init-from`` folder lay differ), and ``trainer_state.pt``
    continues it at the same step."""
    from dataclasses import asdict

    from probekit.train.config import TrainConfig, load_config, resolve

    provenance = json.loads((folder / "probekit.json").read_text())
    saved = provenance["training_config"]  # as resolved for its 2 processes (micro-batch filled in)
    yaml = MODELS_DIR.parent / TRAINING_CONFIGS[folder]
    resolved, _ = resolve(load_config(yaml), world_size=2)
    config = json.loads(json.dumps(asdict(resolved)))
    for c in (saved, config):  # the parent folder: a path on the machine that trained it, relative in the file
        if c["model"]["init_from"]:
            c["model"]["init_from"] = Path(c["model"]["init_from"]).name
    defaults = json.loads(json.dumps(asdict(TrainConfig())))
    where = {"out", "progress"}  # the run folder and the progress bar may differ
    for section in ("model", "data", "optim", "schedule", "run"):
        # keys added to the config after the run was trained must sit at their defaults (they did not exist then)
        later = set(config[section]) - set(saved[section])
        assert {k: config[section][k] for k in later} == {k: defaults[section][k] for k in later}, section
        same = [k for k in saved[section] if not (section == "run" and k in where)]
        assert {k: saved[section][k] for k in same} == {k: config[section][k] for k in same}, section
    state = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=False)
    assert state["step"] == provenance["step"] == config["schedule"]["steps"]
    assert state["tokens"] == provenance["tokens_seen"] and state["world_size"] == provenance["world_size"] == 2


def test_the_default_reasoner_solves_problems_of_its_family():
    """Eight op-3 test problems the model card's evaluation counted correct (``probekit eval ... --sets 3 --n 200
    --seed 0``: indices 1 to 7 and 9, correct for every shipped reasoner), solved again greedily; a random-init
    twin solves none."""
    from probekit.checkpoint import training_family
    from probekit.evaluate.generation import ModelGenerator
    from probekit.evaluate.judge import judge
    from probekit.evaluate.sets import EvalSet, draw_set, generation_budget
    from probekit.igsm.render import prompt_text
    from probekit.probe.layers import random_init_like

    model, tok, provenance = load_checkpoint(DEFAULT_REASONER)
    preset, fmt = training_family(provenance)
    assert preset == "med-op4-ip12" and fmt == "pq"
    eval_set = EvalSet(preset, op=3, format=fmt, n=58, seed=0)
    drawn = draw_set(eval_set)
    chosen = [drawn[i] for i in (1, 2, 3, 4, 5, 6, 7, 9)]
    prompts, budget = [prompt_text(p, fmt) for p, _ in chosen], generation_budget(eval_set, chosen)
    for subject, least, most in ((model, 6, 8), (random_init_like(model, seed=0), 0, 0)):
        outputs = ModelGenerator(subject, tok, batch_size=8, progress=False)(prompts, budget)
        correct = sum(judge(p, out.solution, out.answer)["correct"] for (p, _), out in zip(chosen, outputs))
        assert least <= correct <= most


def test_a_damaged_provenance_file_is_refused_by_the_loader_and_tolerated_by_the_reader(tmp_path, tok):
    from probekit.checkpoint import CheckpointError, read_provenance

    path = save_checkpoint(build_model(load_model_config("gpt2-tiny"), tok), tok, tmp_path / "c", {"step": 1})
    (path / "probekit.json").write_text('{"step": 1')  # cut in half
    with pytest.raises(CheckpointError, match=r"probekit\.json: unreadable provenance"):
        load_checkpoint(path)
    assert read_provenance(path) == {}
