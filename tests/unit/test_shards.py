"""Tests for probekit.shards: packing rules, counters, atomic shard files, memory-mapped read-back."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from probekit.igsm.world import load_world
from probekit.shards import (
    META_FILE,
    iter_windows,
    load_meta,
    pack_records,
    read_shards,
    shard_name,
    write_shards,
)
from probekit.tokenizer import IGSMTokenizer, UnknownWordError

WORLD = load_world()


def make_records(n: int, seed: int = 0, max_sentences: int = 6) -> list[dict]:
    """Records of varied length with real world names (problem, solution, answer)."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        chain = rng.choice(WORLD.chains)
        k = rng.randrange(1, max_sentences + 1)
        sentences, steps = [], []
        for _ in range(k):
            d = rng.randrange(len(chain) - 1)
            a, b = rng.choice(chain[d].items), rng.choice(chain[d + 1].items)
            c = rng.randrange(23)
            sentences.append(f"The number of each {a}'s {b} equals {c}")
            steps.append(f"Define {a}'s {b} as x; so x = {c}")
        question = f"How many {chain[1].category} does {rng.choice(chain[0].items)} have?"
        records.append(
            {
                "problem": ". ".join(sentences) + ". " + question,
                "solution": ". ".join(steps) + ".",
                "answer": rng.randrange(23),
            }
        )
    return records


def expected_stream(records, tok, context):
    seqs = [tok.encode_example(r["problem"], r["solution"], r["answer"]) for r in records]
    kept = [s for s in seqs if len(s) <= context]
    return seqs, kept, [t for s in kept for t in s]


def test_pack_windows_exact_and_in_order(tok):
    records = make_records(200, seed=1)
    context = 128
    res = pack_records(records, tok, context)
    seqs, kept, stream = expected_stream(records, tok, context)
    assert res.windows.dtype == np.uint16
    assert res.windows.ndim == 2 and res.windows.shape[1] == context
    assert res.n_windows == len(stream) // context > 1
    assert res.windows.ravel().tolist() == stream[: res.n_windows * context]  # concatenation order preserved
    assert res.n_records == len(records)
    assert res.n_examples == len(kept)
    assert res.n_dropped_too_long == len(seqs) - len(kept)
    assert res.n_tokens == len(stream) == res.windows.size + res.n_tail_tokens_dropped
    assert 0 <= res.n_tail_tokens_dropped < context
    assert (res.windows != tok.pad_id).all()  # no padding anywhere
    # examples straddle windows: the first window ends mid-example, the next continues it
    assert res.windows[0, 0] == tok.special("PROBLEM")
    assert (res.windows[:, 0] != tok.special("PROBLEM")).any()


def test_too_long_examples_dropped_and_counted(tok):
    records = make_records(60, seed=2, max_sentences=8)
    lengths = [len(tok.encode_example(r["problem"], r["solution"], r["answer"])) for r in records]
    context = sorted(lengths)[len(lengths) // 2]  # about half are too long
    res = pack_records(records, tok, context)
    too_long = sum(n > context for n in lengths)
    assert 0 < too_long < len(records)
    assert res.n_dropped_too_long == too_long
    assert res.n_examples == len(records) - too_long
    assert res.n_tokens == sum(n for n in lengths if n <= context)
    # an example of exactly `context` tokens is kept and fills one window on its own
    exact = records[lengths.index(context)]
    one = pack_records([exact], tok, context)
    assert one.n_windows == 1 and one.n_dropped_too_long == 0 and one.n_tail_tokens_dropped == 0
    assert one.windows[0].tolist() == tok.encode_example(exact["problem"], exact["solution"], exact["answer"])
    # one token shorter context: dropped, counted, nothing packed
    none = pack_records([exact], tok, context - 1)
    assert none.n_windows == 0 and none.n_dropped_too_long == 1 and none.n_examples == 0
    assert none.windows.shape == (0, context - 1)


def test_tail_dropped_and_counted(tok):
    records = make_records(3, seed=3)
    total = sum(len(tok.encode_example(r["problem"], r["solution"], r["answer"])) for r in records)
    res = pack_records(records, tok, total - 1)
    assert res.n_windows == 1 and res.n_tail_tokens_dropped == 1
    res = pack_records(records, tok, total + 1)  # every example fits, but the stream is one token short
    assert res.n_dropped_too_long == 0 and res.n_windows == 0 and res.n_tail_tokens_dropped == total


def test_context_validation(tok):
    records = make_records(2)
    for bad in (0, 1, -5):
        with pytest.raises(ValueError, match="context"):
            pack_records(records, tok, bad)
    with pytest.raises(TypeError):
        pack_records(records, tok, 12.0)
    with pytest.raises(ValueError, match="context"):
        write_shards(records, tok, "/nonexistent/never/created", 1)


def test_unknown_word_names_record_index(tok, tmp_path):
    records = make_records(1500, seed=4)
    records[1234] = dict(records[1234], solution="Define Zorblax's Souvenir as x; so x = 3.")
    with pytest.raises(UnknownWordError) as info:
        pack_records(records, tok, 256)
    assert info.value.record_index == 1234
    assert info.value.words == ["Zorblax"]
    assert "record 1234" in str(info.value) and "Zorblax" in str(info.value)
    # the streamed writer fails the same way and leaves no meta.json and no temp files
    with pytest.raises(UnknownWordError) as info:
        write_shards(iter(records), tok, tmp_path, 256, shard_windows=10)
    assert info.value.record_index == 1234
    assert not (tmp_path / META_FILE).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="did not complete"):
        read_shards(tmp_path)


def test_missing_keys_and_specials_in_text(tok):
    with pytest.raises(ValueError, match="record 1"):
        pack_records([make_records(1)[0], {"problem": "x"}], tok, 64)
    bad = dict(make_records(1)[0], problem="How many Souvenir does Aurora Concourse have? [EOS]")
    with pytest.raises(ValueError, match="record 0"):
        pack_records([bad], tok, 64)


def test_write_read_shards_round_trip(tok, tmp_path):
    records = make_records(400, seed=5)
    context = 96
    packed = pack_records(records, tok, context)
    meta = write_shards((r for r in records), tok, tmp_path, context, shard_windows=25)
    n = packed.n_windows
    assert meta["n_windows"] == n
    assert meta["n_shards"] == -(-n // 25)
    assert [s["n_windows"] for s in meta["shards"]] == [25] * (n // 25) + ([n % 25] if n % 25 else [])
    for key in ("n_records", "n_examples", "n_dropped_too_long", "n_tokens", "n_tail_tokens_dropped"):
        assert meta[key] == getattr(packed, key), key
    assert meta["context"] == context and meta["dtype"] == "uint16"
    assert meta["vocab_size"] == tok.vocab_size and meta["tokenizer_fingerprint"] == tok.fingerprint
    assert json.loads((tmp_path / META_FILE).read_text()) == meta == load_meta(tmp_path)

    # exactly the expected files: no temp files left behind
    expected = {shard_name(i) for i in range(meta["n_shards"])}
    expected |= {META_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert {p.name for p in tmp_path.iterdir()} == expected

    arrays = read_shards(tmp_path, tokenizer=tok)
    assert all(isinstance(a, np.memmap) and a.dtype == np.uint16 for a in arrays)
    assert np.array_equal(np.concatenate(arrays), packed.windows)
    direct = np.load(tmp_path / shard_name(0), mmap_mode="r")
    assert isinstance(direct, np.memmap) and np.array_equal(direct, packed.windows[:25])
    assert np.array_equal(np.stack(list(iter_windows(tmp_path))), packed.windows)

    # the shipped tokenizer is the one the shards were written with
    assert IGSMTokenizer.load(tmp_path).fingerprint == tok.fingerprint
    decoded = tok.decode(packed.windows[0])
    assert decoded.startswith("[PROBLEM] The number of each ")


def test_write_refuses_to_overwrite_unless_asked(tok, tmp_path):
    records = make_records(100, seed=6)
    write_shards(records, tok, tmp_path, 256, shard_windows=10)
    with pytest.raises(FileExistsError):
        write_shards(records, tok, tmp_path, 256)
    meta = write_shards(records[:20], tok, tmp_path, 256, shard_windows=1000, overwrite=True)
    assert meta["n_shards"] == 1 and meta["n_records"] == 20 and meta["n_windows"] > 0
    assert sorted(p.name for p in tmp_path.glob("shard_*.npy")) == [shard_name(0)]
    assert read_shards(tmp_path)[0].shape == (meta["n_windows"], 256)


def test_fingerprint_mismatch_rejected(tok, tmp_path):
    write_shards(make_records(50), tok, tmp_path, 64)

    class TinyWorld:
        def words(self):
            return {"Alpha", "Beta"}

    other = IGSMTokenizer(world=TinyWorld())
    with pytest.raises(ValueError, match="written with tokenizer"):
        read_shards(tmp_path, tokenizer=other)


def test_failed_shard_write_leaves_no_temp_file(tok, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def flaky_save(fh, arr, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            fh.write(b"partial")
            raise OSError("disk full")
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        write_shards(make_records(200, seed=7), tok, tmp_path, 64, shard_windows=5)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert shard_name(0) in names and shard_name(1) not in names
    assert not [n for n in names if n.endswith(".tmp")]
    assert META_FILE not in names


def test_empty_input(tok, tmp_path):
    res = pack_records([], tok, 32)
    assert res.windows.shape == (0, 32) and res.n_records == 0 and res.n_tokens == 0
    meta = write_shards([], tok, tmp_path, 32)
    assert meta["n_shards"] == 0 and read_shards(tmp_path) == []
