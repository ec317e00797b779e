"""The parser on hostile names: separators of the grammar inside item names, with and without categories."""

from __future__ import annotations

import re

import pytest

from probekit.igsm.check import check_solution
from probekit.igsm.generate import GenerationConfig, draw_problem
from probekit.igsm.parse import ParseError, parse_problem
from probekit.igsm.problem import Problem
from probekit.igsm.render import SYMBOLS, prompt_text, solution_text

STEMS = ["Salt and Pepper", "Joe's", "Smith, Jones and Sons", "Trader Joe's's"]
LAYERS = ["Alpha", "Beta's", "Gamma and Delta", "Omega, Zeta"]


def _hostile(problem: Problem) -> Problem:
    """The same graph with item and category names full of "'s", ", " and " and "."""
    items = [[f"{STEMS[j]} {LAYERS[i]}" for j in range(len(layer))] for i, layer in enumerate(problem.items)]
    categories = [f"Kind {LAYERS[i]}" for i in range(problem.depth)]
    return Problem(
        categories,
        items,
        problem.edges,
        problem.statements,
        problem.statement_order,
        problem.query,
        problem.solution_order,
    )


@pytest.mark.parametrize("index", range(40))
@pytest.mark.parametrize("fmt", ["pq", "qp"])
def test_separators_inside_names_parse_back_with_categories(index, fmt):
    problem, _ = draw_problem(GenerationConfig("hard", op=index % 20 + 1, seed=5), index)
    tricky = _hostile(problem)
    text = prompt_text(tricky, fmt)
    parsed = parse_problem(text, dict(zip(tricky.categories, tricky.items)))
    assert parsed.statements == tricky.statements
    assert parsed.query == tricky.query
    assert parsed.values == tricky.values
    solution = solution_text(tricky, tricky.solution_order, iter(SYMBOLS))
    assert check_solution(parsed, solution).correct


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("The number of each A's B equals 3.", "question"),
        ("How many X does Y have? How many X does Y have?", "exactly one question"),
        ("Nonsense. How many Bluebird Family Clinic does Mercy Infirmary have?", "world vocabulary|expected"),
    ],
)
def test_bad_problem_text_is_refused_with_a_reason(text, message):
    with pytest.raises(ParseError, match=message):
        parse_problem(text)


def test_unknown_name_is_named_in_the_error():
    problem, _ = draw_problem(GenerationConfig("med", op=3, seed=1), 0)
    text = prompt_text(problem).replace(problem.items[-1][0], "Zorblax Widget")
    with pytest.raises(ParseError, match="Zorblax Widget"):
        parse_problem(text)


def test_constant_out_of_range_is_refused():
    problem, _ = draw_problem(GenerationConfig("med", op=1, seed=1), 0)
    text = prompt_text(problem)
    bad = re.sub(r"equals \d+\.", "equals 99.", text, count=1)
    if bad != text:
        with pytest.raises(ParseError, match="0..22"):
            parse_problem(bad)


@pytest.mark.parametrize("op", [2, 5, 9])
def test_a_parsed_problem_has_a_reference_order_that_solves_it(op):
    """Problems parsed from text (or rebuilt from records) carry no ``solution_order``; their ``reference_order``
    is then the necessary parameters in a dependency order, which a reference solution may follow; a generated
    problem's is the order its own reference solution used."""
    problem, _ = draw_problem(GenerationConfig("med", op=op, seed=3), 0)
    assert problem.solution_order and problem.reference_order == problem.solution_order
    parsed = parse_problem(prompt_text(problem, "pq"))
    names = [parsed.name(p) for p in parsed.reference_order]  # parsed item indices follow the text, so by name
    assert parsed.solution_order == [] and sorted(names) == sorted(problem.name(p) for p in problem.necessary)
    assert names[-1] == problem.name(problem.query)
    assert check_solution(parsed, solution_text(parsed, parsed.reference_order, iter(SYMBOLS))).correct
