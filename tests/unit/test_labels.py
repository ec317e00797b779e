"""Tests for the six probe labels on a hand-built problem."""

import json

from probekit.igsm.labels import UNKNOWN_VALUE, compute_labels
from probekit.igsm.problem import ABSTRACT, INSTANCE, Problem, Statement

# Shop -> Aisle -> Product; "Empty Aisle" has no children, so its Product count has no predecessors.
DAIRY_MILK = (INSTANCE, 1, 0, 0)  # = 4
BAKERY_MILK = (INSTANCE, 1, 1, 0)  # = 6 (unnecessary)
BREAD = (INSTANCE, 1, 1, 1)  # = 2 times Dairy's Milk = 8
SEDANO_DAIRY = (INSTANCE, 0, 0, 0)  # = Bread + Dairy's Milk = 12
MOM_BAKERY = (INSTANCE, 0, 1, 1)  # = 1 more than Bakery's Product (unnecessary)
QUERY = (ABSTRACT, 0, 0, 2)  # Sedano's's Product = 12 * Dairy's Product = 12 * 4 = 2

PARAMS = [
    "Sedano's's Dairy",
    "MOM's Market's Bakery",
    "Dairy's Milk",
    "Bakery's Milk",
    "Bakery's Bread",
    "Sedano's's Aisle",
    "Sedano's's Product",
    "MOM's Market's Aisle",
    "MOM's Market's Product",
    "Dairy's Product",
    "Bakery's Product",
    "Empty Aisle's Product",
]
REFERENCE = ["Dairy's Milk", "Bakery's Bread", "Sedano's's Dairy", "Dairy's Product", "Sedano's's Product"]
REFERENCE_TEXT = (
    "Define Dairy's Milk as x; so x = 4. Define Bakery's Bread as y; so y = 2 * x = 2 * 4 = 8. "
    "Define Sedano's's Dairy as z; so z = y + x = 8 + 4 = 12. Define Dairy's Product as w; so w = x = 4. "
    "Define Sedano's's Product as v; so v = z * w = 12 * 4 = 2."
)


def shop_problem(with_order: bool = True) -> Problem:
    statements = {
        DAIRY_MILK: Statement((), 4),
        BAKERY_MILK: Statement((), 6),
        BREAD: Statement((DAIRY_MILK,), 2, "mul"),
        SEDANO_DAIRY: Statement((BREAD, DAIRY_MILK)),
        MOM_BAKERY: Statement(((ABSTRACT, 1, 1, 2),), 1, "add"),
    }
    problem = Problem(
        categories=["Shop", "Aisle", "Product"],
        items=[["Sedano's", "MOM's Market"], ["Dairy", "Bakery", "Empty Aisle"], ["Milk", "Bread"]],
        edges=[(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1), (1, 1, 0)],
        statements=statements,
        statement_order=list(statements),
        query=QUERY,
    )
    if with_order:
        by_name = {problem.name(p): p for p in problem.params}
        problem.solution_order = [by_name[n] for n in REFERENCE]
    return problem


def test_static_labels():
    labels = compute_labels(shop_problem())
    assert labels.params == PARAMS
    assert labels.nece == REFERENCE
    assert labels.distance == {
        "Sedano's's Dairy": 1,
        "Dairy's Milk": 2,
        "Bakery's Bread": 2,
        "Sedano's's Product": 0,
        "Dairy's Product": 1,
    }
    dep = set(labels.dep)
    assert ("Sedano's's Product", "Dairy's Milk") in dep
    assert ("MOM's Market's Bakery", "Bakery's Milk") in dep  # through Bakery's Product
    assert ("Dairy's Milk", "Sedano's's Product") not in dep
    assert all(a != b for a, b in dep)
    assert not {b for _, b in dep} & {"Empty Aisle's Product", "MOM's Market's Product"}


def test_dep_is_transitively_closed():
    dep = set(compute_labels(shop_problem()).dep)
    for a, b in dep:
        assert {(a, c) for x, c in dep if x == b} <= dep


def test_reference_steps():
    labels = compute_labels(shop_problem())
    assert len(labels.steps) == len(REFERENCE) + 1
    assert labels.steps[0]["can_next"] == ["Dairy's Milk", "Bakery's Milk", "Empty Aisle's Product"]
    assert labels.steps[0]["nece_next"] == ["Dairy's Milk"]
    after_milk = ["Bakery's Milk", "Bakery's Bread", "Dairy's Product", "Empty Aisle's Product"]
    assert labels.steps[1]["can_next"] == after_milk
    assert labels.steps[1]["nece_next"] == ["Bakery's Bread", "Dairy's Product"]
    assert labels.steps[-1]["value"] == {
        "Dairy's Milk": 4,
        "Bakery's Bread": 8,
        "Sedano's's Dairy": 12,
        "Dairy's Product": 4,
        "Sedano's's Product": 2,
    }
    for t, step in enumerate(labels.steps):
        assert step["t"] == t and step["known"] == REFERENCE[:t]


def test_step_invariants():
    problem = shop_problem()
    labels = compute_labels(problem)
    parents = {problem.name(p): {problem.name(q) for q in problem.parents[p]} for p in problem.params}
    seen_unnecessary: set[str] = set()
    for step in labels.steps:
        known = set(step["known"])
        assert set(step["value"]) == known
        assert step["can_next"] == [a for a in PARAMS if a not in known and parents[a] <= known]
        assert step["nece_next"] == [a for a in step["can_next"] if a in labels.nece]
        unnecessary = set(step["can_next"]) - set(labels.nece)
        assert seen_unnecessary <= unnecessary
        seen_unnecessary = unnecessary


def test_value_label():
    labels = compute_labels(shop_problem())
    assert labels.value_label(0, "Dairy's Milk") == UNKNOWN_VALUE == 23
    assert labels.value_label(1, "Dairy's Milk") == 4
    assert labels.value_label(5, "Bakery's Milk") == UNKNOWN_VALUE


def test_reference_text_gives_reference_labels():
    assert compute_labels(shop_problem(), REFERENCE_TEXT) == compute_labels(shop_problem())


def test_default_order_without_solution_order():
    problem = shop_problem(with_order=False)
    labels = compute_labels(problem)
    assert set(labels.nece) == set(REFERENCE) and labels.nece[-1] == "Sedano's's Product"
    by_name = {problem.name(p): p for p in problem.params}
    for t, name in enumerate(labels.nece):  # a valid dependency order
        assert name in labels.steps[t]["can_next"]
        assert all(problem.name(q) in labels.nece[:t] for q in problem.parents[by_name[name]])


def test_model_solution_with_bad_sentences():
    text = (
        "Define Bakery's Milk as a; so a = 7. Define Nowhere's Thing as b; so b = 1. nonsense. "
        "Define Bakery's Milk as c; so c = 6. Define Dairy's Milk as d; so d = 4."
    )
    labels = compute_labels(shop_problem(), text)
    assert [s["known"] for s in labels.steps] == [
        [],
        ["Bakery's Milk"],
        ["Bakery's Milk"],
        ["Bakery's Milk"],
        ["Bakery's Milk"],
        ["Bakery's Milk", "Dairy's Milk"],
    ]
    assert labels.steps[1]["value"] == {"Bakery's Milk": 6}  # true value, not the written 7
    assert labels.nece[0] == "Dairy's Milk" and set(labels.nece) == set(REFERENCE)
    assert labels.steps[5]["can_next"] == ["Bakery's Bread", "Dairy's Product", "Empty Aisle's Product"]


def test_to_dict_is_json():
    record = json.loads(json.dumps(compute_labels(shop_problem()).to_dict()))
    assert set(record) == {"params", "nece", "dep", "distance", "steps"}
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in record["dep"])
    assert set(record["steps"][0]) == {"t", "known", "can_next", "nece_next", "value"}
