"""Fixtures shared by the test modules: the default tokenizer, a tiny randomly initialised GPT2-rotary, a tiny
foreign Llama checkpoint, the ``probekit probe`` command line and the modules a fresh interpreter imports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def tok():
    """probekit's default closed word-level tokenizer."""
    from probekit.tokenizer import default_tokenizer

    return default_tokenizer()


@pytest.fixture(scope="module")
def gpt2(tok):
    """``gpt2-tiny`` (2 layers, d_model 64), seed 0, eval mode (needs torch and transformers)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from probekit.modeling import build_model, load_model_config

    return build_model(load_model_config("gpt2-tiny"), tok, seed=0).eval()


@pytest.fixture
def tiny_llama():
    """``tiny_llama(path, vocab, **config)``: save a tiny randomly initialised (seed 0) ``LlamaForCausalLM`` (hidden
    64, 2 heads, 2 layers, 512 positions unless ``config`` says otherwise; no tokenizer) to ``path``; the model,
    in eval mode."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def save(path, vocab: int, **config):
        config = {"num_hidden_layers": 2, "max_position_embeddings": 512, **config}
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                vocab_size=vocab,
                hidden_size=64,
                intermediate_size=128,
                num_attention_heads=2,
                num_key_value_heads=2,
                **config,
            )
        )
        model.save_pretrained(path)
        return model.eval()

    return save


@pytest.fixture
def probe_cli(capsys):
    """``probe_cli(argv)``: run ``probekit probe`` on ``argv`` (with ``--json``), check it exits 0; its JSON
    records and what it wrote on stderr."""

    def run(argv):
        from probekit.probe import command

        parser = argparse.ArgumentParser(prog="probekit")
        command.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        captured = capsys.readouterr()
        return json.loads(captured.out), captured.err

    return run


@pytest.fixture
def imported_modules():
    """``imported_modules(code, modules)``: which of ``modules`` a fresh Python interpreter has imported after
    running ``code`` (for checks that a light import stays light)."""

    def run(code: str, modules) -> list[str]:
        script = f"{code}\nimport json, sys; print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
        return json.loads(done.stdout.splitlines()[-1])

    return run
