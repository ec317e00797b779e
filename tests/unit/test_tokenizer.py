"""Tests for probekit.tokenizer: closed vocabulary, exact round trip, markers, save/load, transformers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from probekit.igsm.world import load_world
from probekit.tokenizer import (
    LETTERS,
    SPECIAL_TOKENS,
    IGSMTokenizer,
    UnknownWordError,
    build_tokenizer,
    probe_suffix,
    vocabulary,
)

WORLD = load_world()
OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "official-samples.jsonl"


# --------------------------------------------------------------------------- realistic texts
def _ref(rng, chain, depth, each=True) -> str:
    """A parameter name from real world names: "[each ]X's Y" (Y an item of the next layer or a category)."""
    parent = rng.choice(chain[depth].items)
    if depth + 2 < len(chain) and rng.random() < 0.3:
        child = chain[rng.randrange(depth + 1, len(chain))].category  # abstract parameter
    else:
        child = rng.choice(chain[depth + 1].items)
    return f"{'each ' if each else ''}{parent}'s {child}"


def make_problem(rng: random.Random, fmt: str = "pq", n: int = 8) -> tuple[str, str]:
    """(prompt, question) in the spec's grammar with names drawn from the world; every RHS form appears."""
    chain = rng.choice(WORLD.chains)
    refs = lambda k: [_ref(rng, chain, rng.randrange(len(chain) - 1)) for _ in range(k)]  # noqa: E731

    def base() -> str:
        form = rng.randrange(5)
        if form == 0:
            return refs(1)[0]
        if form == 1:
            a, b = refs(2)
            return f"the sum of {a} and {b}"
        if form == 2:
            a, b = refs(2)
            return f"the difference of {a} and {b}"
        r = refs(3 + (form == 4))
        return f"the sum of {', '.join(r[:-1])} and {r[-1]}"

    def expr(i: int) -> str:
        form = i % 4
        if form == 0:
            return str(rng.randrange(23))
        if form == 1:
            return base()
        if form == 2:
            return f"{rng.randrange(23)} more than {base()}"
        return f"{rng.randrange(1, 23)} times as much as {base()}"

    sentences = [f"The number of {_ref(rng, chain, rng.randrange(len(chain) - 1))} equals {expr(i)}" for i in range(n)]
    depth = rng.randrange(len(chain) - 1)
    target = rng.choice([rng.choice(chain[depth + 1].items), chain[-1].category])
    question = f"How many {target} does {rng.choice(chain[depth].items)} have?"
    statements = ". ".join(sentences) + "."
    return (f"{statements} {question}" if fmt == "pq" else f"{question} {statements}"), question


def make_solution(rng: random.Random, n: int = 6) -> str:
    """A detail-level-0 solution with every operator, copy and constant forms, world names, symbols."""
    chain = rng.choice(WORLD.chains)
    symbols = rng.sample(LETTERS, len(LETTERS))
    num = lambda: str(rng.randrange(23))  # noqa: E731
    sentences = []
    for i in range(n):
        name = _ref(rng, chain, rng.randrange(len(chain) - 1), each=False)
        v, a, b, t = (symbols[(4 * i + k) % 52] for k in range(4))
        op = " " + "+-*"[i % 3] + " "
        form = i % 4
        if form == 0:
            final = num()
        elif form == 1:
            final = f"{a} = {num()}"
        elif form == 2:
            final = f"{a}{op}{num()} = {num()}{op}{num()} = {num()}"
        else:
            final = f"{t}{op}{a} = {num()}{op}{num()} = {num()}"
        temp = f"{t} = {a}{op}{b} = {num()}{op}{num()} = {num()}; " if form == 3 else ""
        sentences.append(f"Define {name} as {v}; {temp}so {v} = {final}")
    return ". ".join(sentences) + "."


# --------------------------------------------------------------------------- vocabulary
def test_specials_first_distinct_and_fixed(tok):
    ids = [tok.special(s) for s in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert len(set(ids)) == len(ids)
    assert tok.special("EOS") == tok.special("[EOS]") == tok.eos_id
    with pytest.raises(KeyError):
        tok.special("[BOS]")


def test_vocab_fits_uint16_and_is_deterministic(tok):
    assert len(SPECIAL_TOKENS) < tok.vocab_size < 2**16
    again = IGSMTokenizer(build_tokenizer(WORLD))
    assert again.fingerprint == tok.fingerprint
    vocab = vocabulary(WORLD)
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocab[len(SPECIAL_TOKENS) :] == sorted(vocab[len(SPECIAL_TOKENS) :])
    assert len(vocab) == len(set(vocab)) == tok.vocab_size
    assert all(tok.id_to_token(i) == t for i, t in enumerate(vocab))


def test_every_world_name_round_trips(tok):
    names = sorted(set(WORLD.item_home) | set(WORLD.category_home))
    for name in names:
        ids = tok.encode(name)
        assert len(ids) == len(name.split(" "))  # one token per word
        assert tok.decode(ids) == name
        text = f"each {name}'s {name}, {name}; {name}. {name}?"
        assert tok.decode(tok.encode(text)) == text


def test_numbers_letters_operators_single_tokens(tok):
    for n in range(23):
        assert len(tok.encode(str(n))) == 1
        assert tok.decode(tok.encode(str(n))) == str(n)
    for letter in LETTERS:
        assert len(tok.encode(letter)) == 1
    ops = "x = y + z - w * v"
    assert len(tok.encode(ops)) == 9
    assert tok.decode(tok.encode(ops)) == ops
    ids = tok.encode("a's b, c; d. e?")
    assert [tok.id_to_token(i) for i in ids] == ["▁a", "'s", "▁b", ",", "▁c", ";", "▁d", ".", "▁e", "?"]


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("fmt", ["pq", "qp"])
def test_problem_round_trip(tok, fmt):
    rng = random.Random(f"problem-{fmt}")
    for _ in range(200):
        prompt, question = make_problem(rng, fmt, n=rng.randrange(1, 15))
        assert tok.decode(tok.encode(prompt)) == prompt
        assert tok.decode(tok.encode(question)) == question
    # qp really starts with the question
    assert prompt.startswith("How many ") if fmt == "qp" else prompt.endswith("have?")


def test_solution_round_trip_all_symbols_numbers_operators(tok):
    rng = random.Random(7)
    seen_letters, seen_numbers, seen_ops = set(), set(), set()
    for _ in range(200):
        sol = make_solution(rng, n=rng.randrange(1, 12))
        assert tok.decode(tok.encode(sol)) == sol
        words = sol.replace(";", " ").replace(".", " ").split()
        seen_letters |= {w for w in words if w in LETTERS}
        seen_numbers |= {w for w in words if w.isdigit()}
        seen_ops |= {w for w in words if w in "+-*="}
    assert seen_letters == set(LETTERS)
    assert seen_numbers == {str(n) for n in range(23)}
    assert seen_ops == set("+-*=")


def test_spec_example_solution_round_trips(tok):
    sol = (
        "Define Aurora Concourse's Souvenir as R; d = N * Q = 18 * 22 = 5; f = s * v = 17 * 9 = 15; "
        "y = d + f = 5 + 15 = 20; C = A * w = 3 * 22 = 20; so R = y + C = 20 + 20 = 17. "
        "Define Aurora Concourse's Terminal as p; so p = 0. Define Aurora Concourse's Boutique as J; so J = e = 6. "
        "Define Aurora Concourse's Artifact as k; t = x - y = 3 - 22 = 4; so k = 9 - t = 9 - 4 = 5."
    )
    assert tok.decode(tok.encode(sol)) == sol


def test_leading_space_is_implicit(tok):
    assert tok.encode(" 12") == tok.encode("12")
    assert tok.decode(tok.encode(" 12")) == "12"
    prompt = "How many Terminal does Northgate International have?"
    assert tok.encode(" " + prompt) == tok.encode(prompt)


# --------------------------------------------------------------------------- strictness
def test_unknown_word_error_names_the_word(tok):
    with pytest.raises(UnknownWordError) as info:
        tok.encode("The number of each Zorblax's Souvenir equals 3.")
    assert info.value.words == ["Zorblax"]
    assert "Zorblax" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownWordError) as info:
        tok.encode("so x = 23 + Foo")
    assert info.value.words == ["23", "Foo"]


@pytest.mark.parametrize("bad", ["a  b", "have ?", "x\ny", "x\tb", "x = 3 ", "equals 3 mod 23"])
def test_malformed_spacing_is_rejected(tok, bad):
    with pytest.raises(UnknownWordError):
        tok.encode(bad)


def test_never_emits_unk(tok):
    with pytest.raises(UnknownWordError):
        tok.encode("[UNK]")


# --------------------------------------------------------------------------- specials and markers
def test_probe_markers_are_single_tokens(tok):
    prefix = "Define Aurora Concourse's Souvenir as x; so x = 3."
    a, b = "Aurora Concourse's Souvenir", "Northgate International's Terminal"
    one = prefix + probe_suffix(a)
    assert one == prefix + f" [START] {a} [END]"
    ids = tok.encode(one)
    start, end = tok.special("START"), tok.special("END")
    assert ids == tok.encode(prefix) + [start] + tok.encode(a) + [end]
    assert tok.decode(ids) == one
    two = prefix + probe_suffix(a, b)
    ids = tok.encode(two)
    assert ids == tok.encode(prefix) + [start] + tok.encode(a) + [tok.special("MID")] + tok.encode(b) + [end]
    assert tok.decode(ids) == two
    # whitespace around a special is absorbed
    assert tok.encode(f"{prefix}[START]{a}[MID] {b}[END]") == ids
    # probe_ids on an id prefix gives the same sequence
    assert tok.probe_ids(tok.encode(prefix), a, b) == ids
    assert tok.probe_ids(tok.encode(prefix), a) == tok.encode(one)


def test_encode_example_layout(tok):
    rng = random.Random(3)
    prompt, _ = make_problem(rng)
    sol = make_solution(rng)
    ids = tok.encode_example(prompt, sol, 12)
    sp = tok.special
    assert ids == [
        sp("PROBLEM"),
        *tok.encode(prompt),
        sp("SOLUTION"),
        *tok.encode(sol),
        sp("ANSWER"),
        *tok.encode("12"),
        sp("EOS"),
    ]
    assert tok.encode_example(prompt, sol, " 12") == ids == tok.encode_example(prompt, sol, "12")
    assert tok.decode(ids) == f"[PROBLEM] {prompt} [SOLUTION] {sol} [ANSWER] 12 [EOS]"
    assert tok.decode(ids, skip_special_tokens=True) == f"{prompt} {sol} 12"
    assert tok.prompt_ids(prompt) == [sp("EOS"), sp("PROBLEM"), *tok.encode(prompt), sp("SOLUTION")]
    # the training example starts with exactly the eval prompt minus the leading [EOS]
    assert ids[: len(tok.prompt_ids(prompt)) - 1] == tok.prompt_ids(prompt)[1:]
    with pytest.raises(ValueError, match="special"):
        tok.encode_example(prompt + " [SOLUTION]", sol, 1)
    with pytest.raises(UnknownWordError):
        tok.encode_example(prompt, sol, 23)


def test_batch_equals_single(tok):
    rng = random.Random(11)
    triples = [(make_problem(rng)[0], make_solution(rng), rng.randrange(23)) for _ in range(50)]
    assert tok.encode_batch([t[0] for t in triples]) == [tok.encode(t[0]) for t in triples]
    assert tok.encode_examples(triples) == [tok.encode_example(*t) for t in triples]
    bad = triples[:3] + [("How many Zorblax does Foo have?", "so x = 1.", 1)]
    with pytest.raises(UnknownWordError, match="Zorblax"):
        tok.encode_examples(bad)


def test_hyphenated_names_stay_one_token():
    class FakeWorld:
        def words(self):
            return {"Post-Op", "Ward", "Saint", "Mary-Anne", "Clinic"}

    tok = IGSMTokenizer(world=FakeWorld())
    text = (
        "The number of each Saint Mary-Anne Clinic's Post-Op Ward equals 4 times as much as each Post-Op Ward's Ward."
    )
    ids = tok.encode(text)
    assert "▁Post-Op" in [tok.id_to_token(i) for i in ids]
    assert "▁Mary-Anne" in [tok.id_to_token(i) for i in ids]
    assert tok.decode(ids) == text
    assert tok.encode("x - y") == [tok.token_to_id("▁x"), tok.token_to_id("▁-"), tok.token_to_id("▁y")]


def test_official_sample_texts_round_trip():
    """The authors' 60 samples (names with apostrophes, '&', "'s's") round-trip with a tokenizer of their names."""
    records = [json.loads(line) for line in OFFICIAL.read_text().splitlines() if line.strip()]

    class OfficialWorld:
        def words(self):
            names = {n for r in records for cat, items in r["categories"].items() for n in [cat, *items]}
            return {w for n in names for w in n.split(" ")}

    tok = IGSMTokenizer(world=OfficialWorld())
    for r in records:
        for text in (
            r["problem"],
            r["question"],
            r["solution"],
            *[c["solution"] for c in r.get("corrupted", []) if "solution" in c],
        ):
            assert tok.decode(tok.encode(text)) == text
        ids = tok.encode_example(r["problem"], r["solution"], r["answer"])
        assert tok.decode(ids) == f"[PROBLEM] {r['problem']} [SOLUTION] {r['solution']} [ANSWER] {r['answer']} [EOS]"


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    loaded = IGSMTokenizer.load(tmp_path)
    assert loaded.fingerprint == tok.fingerprint
    assert loaded.vocab_size == tok.vocab_size
    text = make_problem(random.Random(5))[0] + probe_suffix("Aurora Concourse's Souvenir")
    assert loaded.encode(text) == tok.encode(text)
    assert IGSMTokenizer.load(tmp_path / "tokenizer.json").fingerprint == tok.fingerprint
    with pytest.raises(FileNotFoundError):
        IGSMTokenizer.load(tmp_path / "nowhere")


def test_autotokenizer_offline_matches(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert isinstance(hf, transformers.PreTrainedTokenizerFast)
    assert (hf.pad_token, hf.eos_token, hf.unk_token) == ("[PAD]", "[EOS]", "[UNK]")
    assert (hf.pad_token_id, hf.eos_token_id, hf.unk_token_id) == (tok.pad_id, tok.eos_id, tok.unk_id)
    assert hf.clean_up_tokenization_spaces is False
    assert hf.model_max_length == 2048
    assert len(hf) == tok.vocab_size
    rng = random.Random(9)
    for fmt in ("pq", "qp"):
        prompt, _ = make_problem(rng, fmt)
        sol = make_solution(rng)
        for text in (prompt, sol, prompt + probe_suffix("Aurora Concourse's Souvenir", "Aurora Concourse's Terminal")):
            assert hf(text)["input_ids"] == tok.encode(text)
            assert hf.encode(text, add_special_tokens=True) == tok.encode(text)  # no BOS/EOS added
            assert hf.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    for s in SPECIAL_TOKENS:
        assert hf.convert_tokens_to_ids(s) == tok.special(s)
