"""Position roles of patching inputs (``probekit.causal.roles``): the roles partition the positions, ``changed``
covers the diff span and is whole sentences, the question is the ``?`` sentence."""

from __future__ import annotations

import pytest

from probekit.causal.roles import ALL, PROBLEM_OFFSET, ROLES, input_roles, problem_roles, role_mask, sentences
from probekit.igsm.generate import GenerationConfig, generate_record
from probekit.igsm.pairs import KINDS, PairError, make_pair, tokens


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    config = GenerationConfig("med", seed=3)
    out = []
    for i in range(6):
        record = generate_record(config, i)
        for kind in KINDS:
            try:
                out.append(make_pair(record, kind, seed=1, index=i))
            except PairError:
                pass
    return out


def test_sentences_split_at_punctuation():
    pieces = ["▁The", "▁a", ".", "▁The", "▁b", ".", "▁How", "▁many", "?"]
    assert sentences(pieces) == [(0, 3, "statement"), (3, 6, "statement"), (6, 9, "question")]
    assert problem_roles(pieces, [4, 5]) == ["other_statements"] * 3 + ["changed"] * 3 + ["question"] * 3
    assert problem_roles(pieces, [7, 8]) == ["other_statements"] * 6 + ["changed"] * 3


def test_roles_partition_and_changed_covers_the_diff(pairs):
    assert {p["kind"] for p in pairs} == set(KINDS)
    for pair in pairs:
        pieces = tokens(pair["clean"]["problem"])
        start, end = pair["diff_spans"]["clean"][0]
        length = len(pieces) + PROBLEM_OFFSET + 1 + 7  # the problem, its separators and a solution prefix
        roles = input_roles(pieces, [start, end], length)
        assert len(roles) == length and set(roles) <= set(ROLES)
        masks = [role_mask(roles, r) for r in ROLES]
        assert [sum(col) for col in zip(*masks)] == [1] * length  # a partition
        assert all(role_mask(roles, ALL))
        changed = [i for i, r in enumerate(roles) if r == "changed"]
        assert set(range(start + PROBLEM_OFFSET, end + PROBLEM_OFFSET)) <= set(changed)
        assert changed == list(range(changed[0], changed[-1] + 1))  # one sentence: contiguous
        assert pieces[changed[-1] - PROBLEM_OFFSET] in (".", "?")
        question = [i for i, r in enumerate(roles) if r == "question"]
        if pair["kind"] == "query":
            assert not question and pieces[changed[-1] - PROBLEM_OFFSET] == "?"
        else:
            assert question and pieces[question[-1] - PROBLEM_OFFSET] == "?"
        # separators and the solution prefix
        solution = [i for i, r in enumerate(roles) if r == "solution"]
        assert solution == [0, 1, *range(len(pieces) + PROBLEM_OFFSET, length)]


def test_bad_role_and_too_short_input():
    with pytest.raises(ValueError, match="role must be one of"):
        role_mask(["changed"], "everything")
    with pytest.raises(ValueError, match="cannot hold"):
        input_roles(["▁a", "."], [0, 1], 3)
