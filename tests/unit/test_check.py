"""Tests for the solution parser and the full-solution checker on a hand-built problem."""

import pytest

from probekit.igsm.check import (
    MISTAKE_KINDS,
    Verdict,
    check_solution,
    defined_names,
    parse_solution,
)
from probekit.igsm.problem import ABSTRACT, INSTANCE, Problem, Statement

# Zoo -> Enclosure -> Animal. Names exercise "'s's", "&" and hyphens.
OWL = (INSTANCE, 1, 0, 0)  # Bird House's Owl = 5
LION = (INSTANCE, 1, 1, 1)  # Old-growth Pen's Lion = 3 more than Owl = 8
ND_PEN = (INSTANCE, 0, 1, 1)  # Night & Day Zoo's Old-growth Pen = 7 times Lion = 10
TJ_HOUSE = (INSTANCE, 0, 0, 0)  # Trader Joe's's Bird House = 2 more than Owl + Lion + ND_PEN = 2
TJ_PEN = (INSTANCE, 0, 0, 1)  # Trader Joe's's Old-growth Pen = Owl - Lion = 20
QUERY = (ABSTRACT, 0, 0, 2)  # Trader Joe's's Animal = 2*5 + 20*8 = 9

SENTENCES = [
    "Define Bird House's Owl as a; so a = 5",
    "Define Old-growth Pen's Lion as b; so b = 3 + a = 3 + 5 = 8",
    "Define Night & Day Zoo's Old-growth Pen as c; so c = 7 * b = 7 * 8 = 10",
    "Define Trader Joe's's Bird House as d; e = a + b = 5 + 8 = 13; f = e + c = 13 + 10 = 0; so d = 2 + f = 2 + 0 = 2",
    "Define Trader Joe's's Old-growth Pen as g; so g = a - b = 5 - 8 = 20",
    "Define Bird House's Animal as h; so h = a = 5",
    "Define Old-growth Pen's Animal as i; so i = b = 8",
    "Define Trader Joe's's Animal as j; k = d * h = 2 * 5 = 10; l = g * i = 20 * 8 = 22; so j = k + l = 10 + 22 = 9",
]
EXTRA = "Define Trader Joe's's Enclosure as m; so m = d + g = 2 + 20 = 22"  # correct but unnecessary


def zoo_problem() -> Problem:
    statements = {
        OWL: Statement((), 5),
        LION: Statement((OWL,), 3, "add"),
        ND_PEN: Statement((LION,), 7, "mul"),
        TJ_HOUSE: Statement((OWL, LION, ND_PEN), 2, "add"),
        TJ_PEN: Statement((OWL, LION), inner="diff"),
    }
    return Problem(
        categories=["Zoo", "Enclosure", "Animal"],
        items=[["Trader Joe's", "Night & Day Zoo"], ["Bird House", "Old-growth Pen"], ["Owl", "Lion"]],
        edges=[(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 0, 0), (1, 1, 1)],
        statements=statements,
        statement_order=list(statements),
        query=QUERY,
    )


def solution(sentences: list[str]) -> str:
    return ". ".join(sentences) + "."


def replaced(index: int, sentence: str) -> str:
    return solution(SENTENCES[:index] + [sentence] + SENTENCES[index + 1 :])


def judge(text: str) -> Verdict:
    verdict = check_solution(zoo_problem(), text)
    assert all(m.kind in MISTAKE_KINDS for m in verdict.mistakes)
    assert verdict.correct == (not verdict.mistakes)
    return verdict


def kinds(verdict: Verdict) -> set[str]:
    return {m.kind for m in verdict.mistakes}


# ------------------------------------------------------------------------------------------------ parsing
def test_parse_reference_sentences():
    sentences = parse_solution(solution(SENTENCES))
    assert len(sentences) == len(SENTENCES)
    assert all(s.error is None for s in sentences)
    fourth = sentences[3]
    assert (fourth.name, fourth.symbol) == ("Trader Joe's's Bird House", "d")
    assert [(s.target, s.op, s.operands, s.values, s.result) for s in fourth.steps] == [
        ("e", "+", ("a", "b"), (5, 8), 13),
        ("f", "+", ("e", "c"), (13, 10), 0),
        ("d", "+", (2, "f"), (2, 0), 2),
    ]
    constant, copy = sentences[0].steps[0], sentences[5].steps[0]
    assert (constant.op, constant.operands, constant.result) == (None, (), 5)
    assert (copy.op, copy.operands, copy.values, copy.result) == (None, ("a",), (5,), 5)


@pytest.mark.parametrize(
    "sentence",
    [
        "Define Bird House's Owl as a; so a = 23",  # number out of range
        "Define Bird House's Owl as a; so a = 05",  # not written plainly
        "Define Bird House's Owl as ab; so ab = 5",  # symbol of two letters
        "Define Bird House's Owl as a; so q = 5",  # 'so' symbol differs
        "Define Bird House's Owl as a",  # no 'so' part
        "Define Bird House's Owl as a; so a = 2 + 3 = 5",  # calculation without hint
        "Define Bird House's Owl as a; so a = 5 = 5",  # copy of a number
        "Define Bird House's Owl as a; t = 5; so a = t = 5",  # temporary that is a constant
        "Define Bird House's Owl as a; so a = b + c = 2 * 3 = 6",  # hint and values disagree on the operator
        "Define Bird House's Owl as a; so a = b + c = 2 + 3 = 5 = 5",  # text after the result
        "Bird House's Owl is a; so a = 5",  # no 'Define'
    ],
)
def test_parse_errors_never_raise(sentence):
    (parsed,) = parse_solution(sentence + ".")
    assert parsed.error is not None
    assert parsed.steps == ()


def test_parse_keeps_name_of_broken_sentence_and_skips_back():
    text = "Define Bird House's Owl as a; so a = 5 +. Go BACK one step. Define Old-growth Pen's Lion as b; so b = 8."
    sentences = parse_solution(text)
    assert [s.name for s in sentences] == ["Bird House's Owl", "Old-growth Pen's Lion"]
    assert defined_names(text) == [None, "Old-growth Pen's Lion"]
    assert parse_solution("") == [] and parse_solution(" . ") == []


def test_name_split_at_last_as():
    (parsed,) = parse_solution("Define Texas as Zoo's Owl as Q; so Q = 1.")
    assert (parsed.name, parsed.symbol, parsed.error) == ("Texas as Zoo's Owl", "Q", None)


# ----------------------------------------------------------------------------------------------- checking
def test_reference_solution_is_correct():
    verdict = judge(solution(SENTENCES))
    assert verdict.correct and verdict.answer == verdict.expected_answer == 9
    assert verdict.first_error is None and verdict.unnecessary == ()
    assert verdict.to_dict() == {
        "correct": True,
        "answer": 9,
        "expected_answer": 9,
        "first_error": None,
        "mistakes": [],
        "unnecessary": [],
        "first_error_sentence": None,
        "n_sentences": len(SENTENCES),
    }


def test_independent_sentences_in_any_order():
    swapped = SENTENCES[:4] + [SENTENCES[5], SENTENCES[4]] + SENTENCES[6:]
    assert judge(solution(swapped)).correct


def test_unnecessary_parameter_is_allowed_and_listed():
    verdict = judge(solution(SENTENCES[:-1] + [EXTRA, SENTENCES[-1]]))
    assert verdict.correct
    assert verdict.unnecessary == ("Trader Joe's's Enclosure",)


def test_arithmetic_error():
    verdict = judge(replaced(1, "Define Old-growth Pen's Lion as b; so b = 3 + a = 3 + 5 = 9"))
    assert not verdict.correct
    assert verdict.mistakes[0].kind == "arithmetic_error"
    assert verdict.first_error == "Old-growth Pen's Lion"


def test_mod_23_arithmetic_is_accepted():
    verdict = judge(replaced(4, "Define Trader Joe's's Old-growth Pen as g; so g = a - b = 5 - 8 = 20"))
    assert verdict.correct


def test_wrong_value_carried():
    verdict = judge(replaced(2, "Define Night & Day Zoo's Old-growth Pen as c; so c = 7 * b = 7 * 9 = 17"))
    assert verdict.mistakes[0].kind == "wrong_value_carried"
    assert verdict.first_error == "Night & Day Zoo's Old-growth Pen"
    assert "arithmetic_error" not in kinds(verdict)


def test_hint_constant_written_as_another_value():
    verdict = judge(replaced(1, "Define Old-growth Pen's Lion as b; so b = 3 + a = 4 + 4 = 8"))
    assert [m.kind for m in verdict.mistakes] == ["wrong_value_carried", "wrong_value_carried"]


def test_used_before_defined():
    verdict = judge(replaced(2, "Define Night & Day Zoo's Old-growth Pen as c; so c = 7 * z = 7 * 8 = 10"))
    assert kinds(verdict) == {"used_before_defined"}
    assert verdict.first_error == "Night & Day Zoo's Old-growth Pen"


def test_self_reference_is_used_before_defined():
    verdict = judge(replaced(5, "Define Bird House's Animal as h; so h = h = 5"))
    assert kinds(verdict) == {"used_before_defined"}


def test_unknown_parameter():
    # Night & Day Zoo -> Bird House is not a structure edge: stricter than the authors.
    verdict = judge(replaced(2, "Define Night & Day Zoo's Bird House as c; so c = 7 * b = 7 * 8 = 10"))
    assert verdict.mistakes[0].kind == "unknown_parameter"
    assert verdict.first_error == "Night & Day Zoo's Bird House"
    # d now stands on the unknown name instead of Night & Day Zoo's Old-growth Pen.
    assert ("Trader Joe's's Bird House", "wrong_dependency_set") in {(m.param, m.kind) for m in verdict.mistakes}


def test_redefined_parameter():
    verdict = judge(solution(SENTENCES[:1] + ["Define Bird House's Owl as z; so z = 5"] + SENTENCES[1:]))
    assert kinds(verdict) == {"redefined"}
    assert verdict.first_error == "Bird House's Owl"


def test_redefined_symbol():
    sentence = SENTENCES[3].replace("f = e + c", "a = e + c").replace("2 + f", "2 + a")
    verdict = judge(replaced(3, sentence))
    assert verdict.mistakes[0].kind == "redefined"
    assert verdict.first_error == "Trader Joe's's Bird House"


def test_wrong_dependency_set_with_right_value():
    verdict = judge(replaced(6, "Define Old-growth Pen's Animal as i; so i = 8"))
    assert [m.kind for m in verdict.mistakes] == ["wrong_dependency_set"]
    assert "Old-growth Pen's Lion" in verdict.mistakes[0].detail
    assert verdict.first_error == "Old-growth Pen's Animal"


def test_wrong_constant_is_wrong_value():
    sentences = list(SENTENCES)
    sentences[2] = "Define Night & Day Zoo's Old-growth Pen as c; so c = 6 * b = 6 * 8 = 2"
    sentences[3] = SENTENCES[3].replace("13 + 10 = 0", "13 + 2 = 15").replace("2 + 0 = 2", "2 + 15 = 17")
    sentences[7] = SENTENCES[7].replace("2 * 5 = 10", "17 * 5 = 16").replace("10 + 22 = 9", "16 + 22 = 15")
    verdict = judge(solution(sentences))
    assert [(m.param, m.kind) for m in verdict.mistakes] == [
        ("Night & Day Zoo's Old-growth Pen", "wrong_value"),
        ("Trader Joe's's Bird House", "wrong_value"),
        ("Trader Joe's's Animal", "wrong_value"),
        (None, "wrong_answer"),
    ]
    assert verdict.answer == 15 and verdict.first_error == "Night & Day Zoo's Old-growth Pen"


def test_wrong_operation_is_wrong_value():
    last = SENTENCES[7].replace("so j = k + l = 10 + 22 = 9", "so j = k * l = 10 * 22 = 13")
    verdict = judge(replaced(7, last))
    assert kinds(verdict) == {"wrong_value", "wrong_answer"}


def test_missing_last_sentence_is_not_query_at_end():
    verdict = judge(solution(SENTENCES[:-1]))
    assert verdict.mistakes[0].kind == "not_query_at_end"
    assert verdict.mistakes[0].param == "Old-growth Pen's Animal"
    assert kinds(verdict) == {"not_query_at_end", "wrong_answer"}
    assert verdict.answer == 8


def test_unnecessary_parameter_after_query_is_not_query_at_end():
    verdict = judge(solution(SENTENCES + [EXTRA]))
    assert kinds(verdict) == {"not_query_at_end", "wrong_answer"}
    assert verdict.unnecessary == ("Trader Joe's's Enclosure",)


@pytest.mark.parametrize("text", ["", "The answer is 9.", "so so so", "Define ; so = 3."])
def test_garbage_is_unparseable(text):
    verdict = judge(text)
    assert not verdict.correct
    assert verdict.mistakes[0].kind == "unparseable"
    assert verdict.first_error is None and verdict.answer is None


def test_unparseable_sentence_keeps_its_name_and_defines_nothing():
    verdict = judge(replaced(0, "Define Bird House's Owl as a; so a = five"))
    assert verdict.mistakes[0].kind == "unparseable"
    assert verdict.first_error == "Bird House's Owl"
    assert "used_before_defined" in kinds(verdict)  # a was never defined


def test_verdict_dict_lists_mistakes():
    verdict = judge(replaced(1, "Define Old-growth Pen's Lion as b; so b = 3 + a = 3 + 5 = 9"))
    record = verdict.to_dict()
    assert record["correct"] is False and record["first_error"] == "Old-growth Pen's Lion"
    assert record["mistakes"][0] == {
        "param": "Old-growth Pen's Lion",
        "kind": "arithmetic_error",
        "detail": verdict.mistakes[0].detail,
    }
