"""draw_problem_graphs: the paper's Fig. 1 (structure graph + dependency graph of one problem)."""

import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from probekit.figures.graphs import (
    NODE_GID,
    ROLE_COLORS,
    dependency_params,
    draw_problem_graphs,
    topological_depth,
)
from probekit.igsm.generate import GenerationConfig, draw_problem
from probekit.igsm.problem import INSTANCE
from probekit.probe.data import probe_pool


def _problem(op=6, preset="med", index=0):
    return draw_problem(GenerationConfig(preset, op=op, seed=0), index=index)


def _nodes(ax):
    return {t.get_gid()[len(NODE_GID) :]: t for t in ax.texts if (t.get_gid() or "").startswith(NODE_GID)}


def test_two_panels_and_dependency_nodes():
    problem, _ = _problem()
    fig = draw_problem_graphs(problem)
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 2
        fig.canvas.draw()  # artist-anchored arrows resolve at draw time
        _, dep_ax = fig.axes
        drawn = dependency_params(problem)
        nodes = _nodes(dep_ax)
        assert len(nodes) == len(drawn)
        assert set(drawn) == set(probe_pool(problem))  # the probes' parameter pool
        assert set(nodes) == {problem.name(p) for p in drawn}
        query = problem.name(problem.query)
        assert query in nodes
        assert to_hex(nodes[query].get_bbox_patch().get_edgecolor()) == to_hex(ROLE_COLORS["query"])
        necessary = next(p for p in drawn if p in problem.necessary and p != problem.query)
        unnecessary = next(p for p in drawn if p not in problem.necessary)
        assert to_hex(nodes[problem.name(necessary)].get_bbox_patch().get_edgecolor()) == to_hex(
            ROLE_COLORS["necessary"]
        )
        assert to_hex(nodes[problem.name(unnecessary)].get_bbox_patch().get_edgecolor()) == to_hex(
            ROLE_COLORS["unnecessary"]
        )
        struct_ax = fig.axes[0]
        items = [t for t in struct_ax.texts if (t.get_gid() or "").startswith("item:")]
        assert len(items) == sum(len(layer) for layer in problem.items)
    finally:
        plt.close(fig)


def test_node_set_covers_instances_query_and_their_inputs():
    problem, _ = _problem(op=8, index=1)
    drawn = dependency_params(problem)
    assert set(drawn) >= {p for p in problem.params if p[0] == INSTANCE}
    assert set(drawn) >= problem.necessary
    for p in drawn:
        assert set(problem.parents[p]) <= set(drawn)
    depth = topological_depth(problem, drawn)
    for p in drawn:
        for q in problem.parents[p]:
            assert depth[q] < depth[p]


def test_model_solution_rng_and_first_error():
    problem, solution = _problem()
    # corrupt the first result: the checker's first error is the first defined parameter
    head, sep, tail = solution.partition("; so ")
    symbol, _, rest = tail.partition(" = ")
    value, dot, after = rest.partition(".")
    wrong = head + sep + symbol + " = " + str((int(value) + 1) % 23) + dot + after
    fig = draw_problem_graphs(problem, wrong, show_rng=True)
    try:
        fig.canvas.draw()
        nodes = _nodes(fig.axes[1])
        first = problem.name(problem.solution_order[0])
        assert to_hex(nodes[first].get_bbox_patch().get_edgecolor()) == to_hex(ROLE_COLORS["first_error"])
        assert any(t.get_gid() == "rng" for t in fig.axes[1].texts)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("preset,op", [("med", 1), ("med", 8), ("hard", 12)])
def test_larger_problems_draw(preset, op):
    problem, _ = _problem(op=op, preset=preset)
    fig = draw_problem_graphs(problem)
    try:
        fig.canvas.draw()
        sizes = {t.get_fontsize() for t in _nodes(fig.axes[1]).values()}
        assert min(sizes) >= 4.0
        assert len(_nodes(fig.axes[1])) == len(dependency_params(problem))
    finally:
        plt.close(fig)
