"""Fixtures shared by the test modules: the default tokenizer and a tiny randomly initialised GPT2-rotary."""

from __future__ import annotations

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
