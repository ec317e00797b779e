"""The closed word-level tokenizer for iGSM text (a HuggingFace ``tokenizers.Tokenizer``).

Design
------
The vocabulary is *closed*: every word the world (:meth:`~probekit.igsm.world.World.words`) and the problem /
question / solution grammar can produce gets exactly one id, and nothing else is encodable.
:meth:`IGSMTokenizer.encode` raises :class:`UnknownWordError` (naming the words) instead of silently mapping a
word to ``[UNK]``.

Pre-tokenizer (``Sequence`` of two steps) and decoder:

1. ``Metaspace(replacement="▁", prepend_scheme="always", split=True)``: every space becomes ``▁`` and starts a
   new piece, and a ``▁`` is prepended to the text (and to every stretch of text between special tokens) when
   it does not already start with one. So every word token carries its leading space: ``"▁equals"``,
   ``"▁12"``, ``"▁x"``, ``"▁="``, ``"▁Post-Op"`` (hyphenated names stay one token).
2. ``Split(Regex("'s|[.,;?]"), behavior="isolated")``: the possessive ``'s`` and the punctuation ``. , ; ?``
   become tokens of their own *without* a ``▁``: they attach to the word on their left
   (``"Lagoon's"`` -> ``"▁Lagoon" "'s"``, ``"have?"`` -> ``"▁have" "?"``).

The decoder is the matching ``Metaspace`` decoder: ``▁`` becomes a space, except at the very start of the
decoded text; special tokens decode with one space before them (none at the very start). Hence, for every
text of the grammar (no leading or trailing space, single spaces), ``decode(encode(text)) == text`` exactly,
and the same holds for texts with specials written in the canonical form "one space on each side of a
special, none at the start or end of the text": ``decode(encode_example(p, s, 12)) ==
f"[PROBLEM] {p} [SOLUTION] {s} [ANSWER] 12 [EOS]"`` and ``decode(encode(text + probe_suffix(a))) == text +
probe_suffix(a)``.

Leading space: **encode treats one leading space as implicit**. ``encode(" 12") == encode("12")`` (both give
``["▁12"]``) and decode never emits a leading space. This plays the role of the single leading space the
authors' GPT-2 stream puts before the problem, the solution and the answer (``tok(" " + answer)``): here it
is part of every word token. Spacing is otherwise strict: a double space, a space before punctuation, a tab
or a newline yields a piece outside the vocabulary and therefore an :class:`UnknownWordError`.

Special tokens (ids 0..8, in this fixed order): ``[PAD] [UNK] [EOS] [PROBLEM] [SOLUTION] [ANSWER] [START]
[MID] [END]``. All other tokens follow, sorted by their string, so ids are deterministic for a given world.
The specials are recognised anywhere inside a text as single tokens, and they absorb the whitespace on both
sides (``lstrip``/``rstrip``), so ``"x [START] A's B [END]"`` and ``"x[START]A's B[END]"`` encode the same.

Sequence layout (the paper's ``[222] prob [223] sol [224] ans [50256]``)::

    training example : [PROBLEM] prompt [SOLUTION] solution [ANSWER] answer [EOS]   (encode_example)
    evaluation prompt: [EOS] [PROBLEM] prompt [SOLUTION]                           (prompt_ids)

Probe-marker convention (V-probing, paper §4): the probe input is the token sequence up to the probe position
(the ``[EOS] [PROBLEM] prompt [SOLUTION] partial solution`` prefix, cut where the paper cuts), followed by
``[START] <name> [END]`` for a one-parameter task, or ``[START] <name A> [MID] <name B> [END]`` for
``dep(A, B)``. ``<name>`` is a parameter name without ``each``, as the solution writes it (``"Blue Lagoon
Terminal's Souvenir"``). As text: ``probe_suffix(a, b)`` gives ``" [START] A [END]"`` /
``" [START] A [MID] B [END]"``; appended to any text and encoded, the markers are single tokens. The probe
reads the hidden state at the final ``[END]``.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from probekit.records import write_atomic

SPECIAL_TOKENS: tuple[str, ...] = (
    "[PAD]",
    "[UNK]",
    "[EOS]",
    "[PROBLEM]",
    "[SOLUTION]",
    "[ANSWER]",
    "[START]",
    "[MID]",
    "[END]",
)
"""Special tokens; they get ids ``0..len(SPECIAL_TOKENS)-1`` in this order."""

GRAMMAR_WORDS: tuple[str, ...] = tuple(
    sorted(
        set(
            # problem statements and the question
            "The number of each equals more than times as much the sum difference and How many does have".split()
            # solution sentences
            + "Define as so".split()
        )
    )
)
"""The template words of the problem, question and solution grammar (spec sections 2-3)."""

OPERATORS: tuple[str, ...] = ("=", "+", "-", "*")
"""Solution operators; space-separated words, so their tokens carry a ``▁``."""

ATTACHED: tuple[str, ...] = ("'s", ".", ",", ";", "?")
"""Possessive and punctuation: tokens without ``▁`` that attach to the word on their left."""

NUMBERS: tuple[str, ...] = tuple(str(n) for n in range(23))
"""All numbers of the grammar (everything is mod 23)."""

LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The 52 solution symbols."""

REPLACEMENT = "▁"
MODEL_MAX_LENGTH = 2048  # the paper's evaluation context
TOKENIZER_FILE = "tokenizer.json"
_SPLIT_PATTERN = r"'s|[.,;?]"


class TokenizerFileError(ValueError):
    """A ``tokenizer.json`` that cannot be read (truncated, corrupt, not a tokenizer); the message names it."""


class UnknownWordError(ValueError):
    """A text holds words outside the closed vocabulary; ``.words`` lists them (in order of appearance)."""

    def __init__(self, words: Sequence[str], text: str | None = None, record_index: int | None = None):
        self.words = list(words)
        self.text = text
        self.record_index = record_index
        where = f" in record {record_index}" if record_index is not None else ""
        shown = ", ".join(repr(w) for w in dict.fromkeys(self.words))
        snippet = ""
        if text is not None:
            snippet = f" (text: {text[:120]!r}{'...' if len(text) > 120 else ''})"
        hint = ""
        if any(w.isspace() for w in self.words):
            hint = " [a stray space: double space, space before punctuation, or trailing space]"
        super().__init__(f"unknown word(s){where}: {shown}{hint}{snippet}")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=REPLACEMENT, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
        ]
    )


def _decoder() -> decoders.Decoder:
    # Special tokens decode with one space before them (none at the very start), like a word token; this
    # mirrors encode, which absorbs the whitespace around a special.
    marks = [decoders.Replace(s, REPLACEMENT + s) for s in SPECIAL_TOKENS]
    return decoders.Sequence([*marks, decoders.Metaspace(replacement=REPLACEMENT, prepend_scheme="always", split=True)])


def _vocabulary_pieces(words: Iterable[str]) -> set[str]:
    """Every piece the pre-tokenizer makes of the grammar's texts, given the space-separated words.

    Each word is run through the pre-tokenizer in every position the grammar puts a word in (alone, before
    ``'s``, before each punctuation mark), so the vocabulary holds exactly the pieces real texts produce --
    including the pieces of names that themselves contain ``'s`` or punctuation.
    """
    pre = _pre_tokenizer()
    pieces: set[str] = set(ATTACHED)
    for word in words:
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"vocabulary word must be non-empty and free of whitespace: {word!r}")
        sample = f"{word} {word}'s {word}, {word}; {word}. {word}?"
        pieces.update(piece for piece, _ in pre.pre_tokenize_str(sample))
    bad = sorted(p for p in pieces if p not in ATTACHED and not p.startswith(REPLACEMENT))
    if bad:  # cannot happen with the current pre-tokenizer; guards later edits of it
        raise AssertionError(f"unexpected vocabulary pieces: {bad}")
    return pieces


def vocabulary(world=None) -> list[str]:
    """The full token list in id order: the specials, then every other piece sorted by its string."""
    if world is None:
        from probekit.igsm.world import load_world

        world = load_world()
    words = set(world.words()) | set(GRAMMAR_WORDS) | set(OPERATORS) | set(NUMBERS) | set(LETTERS)
    pieces = _vocabulary_pieces(sorted(words)) - set(SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + sorted(pieces)


def build_tokenizer(world=None) -> Tokenizer:
    """Build the closed word-level ``tokenizers.Tokenizer`` for ``world`` (default: the project's world).

    ``world`` needs only a ``words()`` method returning the space-separated words of its names.
    """
    tokens = vocabulary(world)
    if len(tokens) > 2**16:
        raise ValueError(f"vocabulary of {len(tokens)} tokens does not fit uint16")
    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = _decoder()
    tok.add_special_tokens(
        [
            AddedToken(s, single_word=False, lstrip=True, rstrip=True, normalized=False, special=True)
            for s in SPECIAL_TOKENS
        ]
    )
    for i, s in enumerate(SPECIAL_TOKENS):  # the specials keep their model ids
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def probe_suffix(a: str, b: str | None = None) -> str:
    """The probe markers as text: ``" [START] a [END]"`` or, for a pair task, ``" [START] a [MID] b [END]"``."""
    return f" [START] {a} [END]" if b is None else f" [START] {a} [MID] {b} [END]"


class IGSMTokenizer:
    """The closed word-level iGSM tokenizer: strict encode, exact decode, example layout, save/load.

    Wraps a ``tokenizers.Tokenizer`` made by :func:`build_tokenizer` (``IGSMTokenizer()`` builds one for the
    default world; ``IGSMTokenizer(world=w)`` for another world).
    """

    def __init__(self, tokenizer: Tokenizer | None = None, *, world=None):
        if tokenizer is None:
            tokenizer = build_tokenizer(world)
        elif world is not None:
            raise ValueError("pass either a tokenizer or a world, not both")
        for i, s in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(s) != i:
                raise ValueError(f"not an iGSM tokenizer: special {s} has id {tokenizer.token_to_id(s)}, expected {i}")
        self.tokenizer = tokenizer
        self._special = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
        self.unk_id = self._special["[UNK]"]
        self.pad_id = self._special["[PAD]"]
        self.eos_id = self._special["[EOS]"]
        self.n_special = len(SPECIAL_TOKENS)
        self._json = tokenizer.to_str()
        self.fingerprint = hashlib.sha256(
            json.dumps(json.loads(self._json), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        """sha256 of the canonical (key-sorted) tokenizer JSON; identifies the vocabulary in shard metadata."""

    # ------------------------------------------------------------------ basics
    @property
    def vocab_size(self) -> int:
        """Number of ids (specials included); every id is below this and below 2**16."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def special(self, name: str) -> int:
        """The id of a special token, by name with or without brackets (``"EOS"`` or ``"[EOS]"``)."""
        key = name if name.startswith("[") else f"[{name}]"
        try:
            return self._special[key]
        except KeyError:
            raise KeyError(f"no special token {name!r}; known: {', '.join(SPECIAL_TOKENS)}") from None

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.tokenizer.id_to_token(i)

    def _check(self, enc, text: str) -> list[int]:
        ids = enc.ids
        if self.unk_id in ids:
            words = []
            for i, (s, e) in zip(ids, enc.offsets):
                if i == self.unk_id:
                    word = text[s:e]
                    # the piece's own leading space is not part of the word (a lone stray space is kept)
                    words.append(word[1:] if len(word) > 1 and word[0] == " " else word)
            raise UnknownWordError(words, text)
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens written in the text (``[START]`` ...) become single ids.

        A leading space is implicit (``encode(" 12") == encode("12")``). Raises :class:`UnknownWordError`
        naming every word outside the vocabulary.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._check(self.tokenizer.encode(text, add_special_tokens=False), text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (parallel in the Rust backend)."""
        texts = list(texts)
        encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [self._check(enc, text) for enc, text in zip(encs, texts)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; ``decode(encode(text)) == text`` for every grammar text."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ layouts
    def _plain(self, ids: list[int], what: str, text: str) -> list[int]:
        if ids and min(ids) < self.n_special:
            found = [SPECIAL_TOKENS[i] for i in ids if i < self.n_special]
            raise ValueError(f"{what} text must not contain special tokens {found}: {text[:120]!r}")
        return ids

    @staticmethod
    def _answer_text(answer) -> str:
        if isinstance(answer, str):
            return answer
        if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
            raise TypeError(f"answer must be an int or a str, got {answer!r}")
        return str(int(answer))

    def _layout(self, p: list[int], s: list[int], a: list[int]) -> list[int]:
        sp = self._special
        return [sp["[PROBLEM]"], *p, sp["[SOLUTION]"], *s, sp["[ANSWER]"], *a, sp["[EOS]"]]

    def encode_example(self, prompt: str, solution: str, answer: int | str) -> list[int]:
        """``[PROBLEM] prompt [SOLUTION] solution [ANSWER] answer [EOS]`` (the paper's training sequence).

        ``answer`` may be an int or a string (``12``, ``"12"`` and ``" 12"`` give the same ids). The three texts
        must not contain special tokens.
        """
        a = self._answer_text(answer)
        p, s, a_ids = self.encode(prompt), self.encode(solution), self.encode(a)
        return self._layout(
            self._plain(p, "prompt", prompt), self._plain(s, "solution", solution), self._plain(a_ids, "answer", a)
        )

    def encode_examples(self, examples: Sequence[tuple[str, str, int | str]]) -> list[list[int]]:
        """:meth:`encode_example` for many ``(prompt, solution, answer)`` triples (batched, faster)."""
        texts: list[str] = []
        for prompt, solution, answer in examples:
            texts += [prompt, solution, self._answer_text(answer)]
        encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        out = []
        for k in range(0, len(texts), 3):
            parts = []
            for what, enc, text in zip(("prompt", "solution", "answer"), encs[k : k + 3], texts[k : k + 3]):
                parts.append(self._plain(self._check(enc, text), what, text))
            out.append(self._layout(*parts))
        return out

    def prompt_ids(self, prompt: str) -> list[int]:
        """Evaluation prompt ``[EOS] [PROBLEM] prompt [SOLUTION]`` (the paper's ``[50256, 222] prompt [223]``)."""
        p = self._plain(self.encode(prompt), "prompt", prompt)
        return [self.eos_id, self._special["[PROBLEM]"], *p, self._special["[SOLUTION]"]]

    def probe_ids(self, prefix_ids: Sequence[int], a: str, b: str | None = None) -> list[int]:
        """Probe input: ``prefix_ids`` + ``[START] a [END]`` (or ``[START] a [MID] b [END]``); see module doc."""
        sp = self._special
        ids = [*prefix_ids, sp["[START]"], *self._plain(self.encode(a), "probe name", a)]
        if b is not None:
            ids += [sp["[MID]"], *self._plain(self.encode(b), "probe name", b)]
        return ids + [sp["[END]"]]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (atomically).

        ``transformers.AutoTokenizer.from_pretrained(directory)`` loads the result offline as a
        ``PreTrainedTokenizerFast`` with the same ids as :meth:`encode`.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = [s for s in SPECIAL_TOKENS if s not in ("[PAD]", "[UNK]", "[EOS]")]
        specials = {
            "pad_token": "[PAD]",
            "eos_token": "[EOS]",
            "unk_token": "[UNK]",
            "additional_special_tokens": extra,
        }
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "clean_up_tokenization_spaces": False,
            "model_max_length": MODEL_MAX_LENGTH,
            "padding_side": "right",
            "truncation_side": "right",
            "model_input_names": ["input_ids", "attention_mask"],
            "probekit_fingerprint": self.fingerprint,
        }
        write_atomic(directory / TOKENIZER_FILE, self.tokenizer.to_str(pretty=True))
        write_atomic(directory / "special_tokens_map.json", json.dumps(specials, indent=2) + "\n")
        write_atomic(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> IGSMTokenizer:
        """Load a tokenizer written by :meth:`save` (``directory`` or the ``tokenizer.json`` path itself).

        Raises
        ------
        FileNotFoundError
            No such file.
        TokenizerFileError
            The file is truncated or corrupt (not JSON, or JSON that is not a tokenizer).
        ValueError
            A readable tokenizer that is not an iGSM one (the specials are not ids 0..8).
        """
        path = Path(directory)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer file: {path}")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise TokenizerFileError(f"{path}: unreadable: {err.strerror or err}") from None
        try:
            json.loads(data)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise TokenizerFileError(
                f"{path}: truncated or corrupt tokenizer file ({len(data)} bytes; not JSON: {err})"
            ) from None
        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception
            raise TokenizerFileError(f"{path}: corrupt tokenizer file ({len(data)} bytes; {err})") from None
        return cls(tokenizer)

    def __repr__(self) -> str:
        return f"IGSMTokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


@lru_cache(maxsize=1)
def default_tokenizer() -> IGSMTokenizer:
    """The tokenizer of the project's default world (built once, then cached)."""
    return IGSMTokenizer()
