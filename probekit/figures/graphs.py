"""Paper Fig. 1 (and Fig. 11): one problem's structure graph and dependency graph, side by side.

:func:`draw_problem_graphs` is the figure; :func:`dependency_params` and :func:`topological_depth` are the two
pieces of graph bookkeeping it draws from (public so that tests and other figures see the same node set). All
graph facts come from :class:`~probekit.igsm.problem.Problem` (``parents``, ``ancestors``, ``necessary``,
``topological_params``, ``name``) and, for a given solution, from :func:`~probekit.igsm.labels.compute_labels`
and :func:`~probekit.igsm.check.check_solution`; this module only lays them out. The layout is computed here
(layers by longest-path depth, a few barycentre sweeps against crossings) and drawn with plain matplotlib.

Which parameters the dependency panel shows: the problem's dependency graph G_d without RNG, i.e. every
instance parameter (one per problem sentence), the abstract parameters a sentence references, the necessary
ones (the query and its ancestors), and everything those depend on: the pool the probes draw from
(:func:`probekit.probe.data.probe_pool`). With a ``solution``, also every problem parameter that solution
defines, with its ancestors. Abstract parameters nobody uses are left out, as in the paper's figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch

from probekit.figures import style
from probekit.igsm.check import check_solution
from probekit.igsm.labels import compute_labels
from probekit.igsm.problem import ABSTRACT, INSTANCE, Param, Problem
from probekit.probe.data import probe_pool

__all__ = ["NODE_GID", "ROLE_COLORS", "dependency_params", "draw_problem_graphs", "topological_depth"]

#: ``Text.get_gid()`` of every dependency-graph node is ``NODE_GID + name`` (the name as the solution writes it)
NODE_GID = "param:"
#: node colours by role (taken from :data:`probekit.figures.style.COLORS`)
ROLE_COLORS = {
    "query": style.COLORS["control"],
    "necessary": style.COLORS["positive"],
    "unnecessary": style.COLORS["random-init"],
    "first_error": style.COLORS["negative"],
    "rng": style.COLORS["majority"],
}

_MAX_FONT, _MIN_FONT = 8.0, 4.0
_CHAR_WIDTH = 0.58  # mean glyph width of DejaVu Sans, in em
_LINE_HEIGHT = 1.25  # in em, incl. leading
_WRAPS = (40, 30, 24, 20, 17, 14, 12, 10, 8)


# ---------------------------------------------------------------------------------------------- graph facts
def dependency_params(problem: Problem, solution: str | None = None) -> list[Param]:
    """The parameters the dependency panel draws, in ``problem.topological_params`` order (RNG never included).

    The problem's dependency-graph parameters, the same set the probes draw from
    (:func:`probekit.probe.data.probe_pool`: every instance parameter, the abstract parameters a sentence
    references and the necessary ones, closed under ancestors), plus the parameters ``solution`` defines (when
    given) and their ancestors (``problem.ancestors``).
    """
    keep = set(probe_pool(problem))
    for p in _written(problem, solution):
        keep |= {p} | problem.ancestors[p]
    return [p for p in problem.topological_params if p in keep]


def topological_depth(problem: Problem, params: Iterable[Param]) -> dict[Param, int]:
    """Longest-path depth of each of ``params`` in the dependency graph: 0 for a parameter with no parent among
    them (a constant, or nothing but RNG), else 1 + the deepest parent's depth."""
    wanted = set(params)
    depth: dict[Param, int] = {}
    for p in problem.topological_params:  # parents come first
        if p in wanted:
            depth[p] = 1 + max((depth[q] for q in problem.parents[p] if q in depth), default=-1)
    return depth


def _written(problem: Problem, solution: str | None) -> list[Param]:
    """The problem parameters ``solution`` defines, in definition order (none without a solution)."""
    if solution is None:
        return []
    by_name = {problem.name(p): p for p in problem.params}
    return [by_name[n] for n in compute_labels(problem, solution).steps[-1]["known"]]


# ---------------------------------------------------------------------------------------------- layout
def _order_columns(problem: Problem, columns: list[list[Param]], sweeps: int = 4) -> list[list[Param]]:
    """Reorder each column by the barycentre of its neighbours' positions (down, then up), a few times."""
    parents = {p: list(problem.parents[p]) for col in columns for p in col}
    children: dict[Param, list[Param]] = {p: [] for col in columns for p in col}
    for p, qs in parents.items():
        for q in qs:
            if q in children:
                children[q].append(p)

    def positions():
        return {p: (len(col) - 1) / 2 - i for col in columns for i, p in enumerate(col)}

    def reorder(col, neighbours, pos):
        def key(item):
            i, p = item
            ys = [pos[q] for q in neighbours[p] if q in pos]
            return (-(sum(ys) / len(ys)) if ys else -((len(col) - 1) / 2 - i), i)

        return [p for _, p in sorted(enumerate(col), key=key)]

    for _ in range(sweeps):
        for c in range(1, len(columns)):
            columns[c] = reorder(columns[c], parents, positions())
        for c in range(len(columns) - 2, -1, -1):
            columns[c] = reorder(columns[c], children, positions())
    return columns


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [text]


def _wrap_label(owner: str, tail: str, width: int) -> list[str]:
    """``"<owner>'s"`` and ``"<tail>"`` on their own lines, each wrapped at ``width`` characters."""
    return _wrap(f"{owner}'s", width) + _wrap(tail, width)


def _fit_font(
    wrapped: Callable[[int], list[list[str]]],
    box_w_pt: float,
    box_h_pt: float,
    prefix: int = 0,
    max_font: float = _MAX_FONT,
) -> tuple[float, int]:
    """(font size, wrap width) that makes every label fit a ``box_w_pt`` x ``box_h_pt`` cell, largest font first;
    ``wrapped(width)`` gives every label's lines at that wrap width."""
    best = None
    for width in _WRAPS:
        lines = wrapped(width) or [["x"]]
        chars = max(len(line) for ls in lines for line in ls) + prefix
        rows = max(len(ls) for ls in lines)
        size = min(max_font, box_w_pt / (_CHAR_WIDTH * chars + 1.0), box_h_pt / (_LINE_HEIGHT * rows + 1.0))
        if best is None or size > best[0] + 0.25:
            best = (size, width)
    if best is None:
        raise ValueError("no wrap width to try: _WRAPS is empty")
    return max(best[0], _MIN_FONT), best[1]


def _split_name(problem: Problem, p: Param) -> tuple[str, str]:
    _, i, j, k = p
    return problem.items[i][j], (problem.items[i + 1][k] if p[0] == INSTANCE else problem.categories[k])


def _tint(color, amount: float = 0.22):
    r, g, b = to_rgb(color)
    return (1 - amount + amount * r, 1 - amount + amount * g, 1 - amount + amount * b)


# ---------------------------------------------------------------------------------------------- drawing
def draw_problem_graphs(
    problem: Problem, solution: str | None = None, *, show_rng: bool = False, title: str | None = None
):
    """Draw ``problem``'s structure graph (left) and dependency graph (right), as in the paper's Fig. 1.

    Left: the structure graph, one row per layer (top layer first) labelled with its category, the layer's items
    in generator order, and an arrow from item ``j`` of layer ``i`` to item ``k`` of layer ``i+1`` for every edge
    of ``problem.edges`` (one instance parameter each). An edge is coloured as its instance parameter is in the
    right panel.

    Right: the dependency graph over the parameters of :func:`dependency_params`, labelled with their names as
    the solution writes them (``problem.name``), laid out in columns by :func:`topological_depth` (sources on
    the left, arrows from each parameter's dependencies, ``problem.parents``). Solid arrows are references a
    problem sentence states; dashed ones, into dashed-border abstract parameters, are the sums their definitions
    imply. The query has a thick orange border, necessary parameters (the query's ancestors, what the answer
    needs) are green, unnecessary ones grey. A number before a name is its position in the solution: the
    reference solution's (``problem.reference_order``) when ``solution`` is None, else the given one's, whose
    first wrong parameter (``check_solution(...).first_error``) gets a vermilion border. RNG, the source of the
    random constants, is omitted unless ``show_rng`` (then a small source node with thin dotted arrows).

    Fonts shrink and names wrap (owner's / item on separate lines, then narrower) as the graph grows, and the
    figure grows with the number of columns and of nodes per column, so problems up to op ~ 8 (and beyond)
    stay legible. Returns the ``matplotlib.figure.Figure`` (two axes: structure, dependency); save it with
    :func:`probekit.figures.style.save_figure`. Each dependency node is a ``Text`` with gid
    ``NODE_GID + name`` (see :data:`NODE_GID`).
    """
    nodes = dependency_params(problem, solution)
    depth = topological_depth(problem, nodes)
    if solution is None:
        order = problem.reference_order
        first_error = None
    else:
        order = list(dict.fromkeys(_written(problem, solution)))
        verdict = check_solution(problem, solution)
        first_error = verdict.first_error
        kind = verdict.mistakes[0].kind if verdict.mistakes else None
    step_of = {p: i + 1 for i, p in enumerate(order)}

    shift = 1 if show_rng else 0
    n_cols = max(depth.values(), default=0) + 1 + shift
    columns: list[list[Param]] = [[] for _ in range(n_cols)]
    for p in nodes:
        columns[depth[p] + shift].append(p)
    columns = _order_columns(problem, columns)
    rows = max(len(c) for c in columns)

    # sizes: the dependency panel grows with columns and rows, the structure panel with items per layer
    max_items = max(len(layer) for layer in problem.items)
    height = min(max(3.6, 0.65 * rows + 0.9), 11.0)
    dep_w = min(max(4.2, 1.45 * n_cols), 12.0)
    struct_w = min(max(3.0, 1.05 * max_items + 1.1), 5.0)
    with plt.rc_context(style.RC):
        fig, axes = style.new_figure(
            ncols=2,
            nrows=1,
            width=(dep_w + struct_w) / 2,
            height=height,
            gridspec_kw={"width_ratios": [struct_w, dep_w]},
        )
        ax_s, ax_d = axes[0]
        _draw_structure(ax_s, problem, set(nodes), struct_w, height)
        _draw_dependency(ax_d, problem, columns, rows, step_of, first_error, show_rng, dep_w, height)
        op = problem.op_count()
        ax_s.set_title(f"structure graph (ip = {len(problem.edges)})")
        dep_title = f"dependency graph (op = {op}; query: {problem.name(problem.query)})"
        if solution is not None:
            judged = "correct" if not verdict.mistakes else f"first error: {first_error or '-'} ({kind})"
            dep_title += f"\nthis solution: {judged}"
        ax_d.set_title(dep_title)
        if title:
            fig.suptitle(title)
        _legend(fig, solution is not None, show_rng)
    return fig


def _node(ax, x, y, text, size, face, edge, lw=0.8, ls="-", gid=None, weight="normal"):
    t = ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=size,
        multialignment="center",
        zorder=3,
        fontweight=weight,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": face, "edgecolor": edge, "linewidth": lw, "linestyle": ls},
    )
    if gid:
        t.set_gid(gid)
    return t


def _arrow(ax, src, dst, color, lw=0.8, ls="-", rad=0.0, src_xy=(1.0, 0.5), dst_xy=(0.0, 0.5), alpha=1.0):
    ax.annotate(
        "",
        xy=dst_xy,
        xycoords=dst,
        xytext=src_xy,
        textcoords=src,
        zorder=2,
        arrowprops={
            "arrowstyle": "-|>",
            "color": color,
            "lw": lw,
            "linestyle": ls,
            "alpha": alpha,
            "shrinkA": 3,
            "shrinkB": 3,
            "mutation_scale": 7,
            "connectionstyle": f"arc3,rad={rad}",
        },
    )


def _role(problem: Problem, p: Param) -> str:
    if p == problem.query:
        return "query"
    return "necessary" if p in problem.necessary else "unnecessary"


def _draw_structure(ax, problem: Problem, drawn: set[Param], width_in: float, height_in: float) -> None:
    ax.set_axis_off()
    d = problem.depth
    max_items = max(len(layer) for layer in problem.items)
    ax.set_xlim(-0.9, max_items - 0.5)
    ax.set_ylim(-(d - 0.5), 0.5)
    cell_w = 0.82 * width_in * 72 / (max_items + 0.4)
    cell_h = 0.55 * height_in * 72 / d
    names = [name for layer in problem.items for name in layer]
    size, wrap = _fit_font(lambda w: [_wrap(n, w) for n in names], cell_w, cell_h)
    cat_size = min(size + 0.5, _MAX_FONT)
    texts: dict[tuple[int, int], object] = {}
    for i, layer in enumerate(problem.items):
        n = len(layer)
        offset = (max_items - n) / 2
        y = -i
        ax.add_patch(
            FancyBboxPatch(
                (offset - 0.45, y - 0.32),
                n - 0.1,
                0.64,
                boxstyle="round,pad=0.02",
                facecolor="#F2F2F2",
                edgecolor="#BBBBBB",
                lw=0.6,
                zorder=1,
            )
        )
        ax.text(
            offset - 0.55,
            y,
            "\n".join(textwrap.wrap(problem.categories[i], 10)),
            ha="right",
            va="center",
            fontsize=cat_size,
            fontweight="bold",
            color="#444444",
        )
        for j, name in enumerate(layer):
            label = "\n".join(_wrap(name, wrap))
            texts[(i, j)] = _node(ax, offset + j, y, label, size, "white", "#666666", gid=f"item:{i}:{j}")
    for i, j, k in sorted(problem.edges):
        p = (INSTANCE, i, j, k)
        role = _role(problem, p) if p in drawn else "unnecessary"
        color = ROLE_COLORS[role] if role != "unnecessary" else "#888888"
        lw = 1.6 if role == "query" else (1.1 if role == "necessary" else 0.7)
        _arrow(ax, texts[(i, j)], texts[(i + 1, k)], color, lw=lw, src_xy=(0.5, 0.0), dst_xy=(0.5, 1.0))


def _draw_dependency(
    ax,
    problem: Problem,
    columns: list[list[Param]],
    rows: int,
    step_of: dict[Param, int],
    first_error: str | None,
    show_rng: bool,
    width_in: float,
    height_in: float,
) -> None:
    ax.set_axis_off()
    n_cols = len(columns)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(-rows / 2, rows / 2)
    cell_w = 0.86 * width_in * 72 / n_cols
    cell_h = 0.75 * height_in * 72 / rows
    params = [p for col in columns for p in col]
    digits = len(str(max(step_of.values(), default=1))) + 2 if step_of else 0
    split = [_split_name(problem, p) for p in params]
    size, wrap = _fit_font(lambda w: [_wrap_label(o, t, w) for o, t in split], cell_w, cell_h, prefix=digits)
    texts: dict[Param, object] = {}
    pos: dict[Param, tuple[float, float]] = {}
    for c, col in enumerate(columns):
        for r, p in enumerate(col):
            x, y = c, (len(col) - 1) / 2 - r
            role = _role(problem, p)
            name = problem.name(p)
            lines = _wrap_label(*_split_name(problem, p), wrap)
            if p in step_of:
                lines[0] = f"{step_of[p]}. {lines[0]}"
            edge, lw = ROLE_COLORS[role], 0.9
            if role == "query":
                lw = 2.2
            if first_error is not None and name == first_error:
                edge, lw = ROLE_COLORS["first_error"], 2.2
            face = _tint(ROLE_COLORS[role], 0.35 if role == "query" else 0.22)
            texts[p] = _node(
                ax,
                x,
                y,
                "\n".join(lines),
                size,
                face,
                edge,
                lw=lw,
                ls="--" if p[0] == ABSTRACT else "-",
                gid=NODE_GID + name,
                weight="bold" if role == "query" else "normal",
            )
            pos[p] = (x, y)
    if show_rng:
        rng_text = _node(ax, 0, 0, "RNG", size, "white", ROLE_COLORS["rng"], lw=0.6, gid="rng")
    for p in params:
        for q in problem.parents[p]:
            if q not in texts:
                continue
            span = pos[p][0] - pos[q][0]
            rad = 0.0 if span <= 1 else (0.18 if pos[q][1] >= pos[p][1] else -0.18)
            both = p in problem.necessary and q in problem.necessary
            color = ROLE_COLORS["necessary"] if both else "#888888"
            _arrow(
                ax, texts[q], texts[p], color, lw=1.0 if both else 0.7, ls="--" if p[0] == ABSTRACT else "-", rad=rad
            )
        if show_rng and problem.has_constant(p):
            _arrow(
                ax,
                rng_text,
                texts[p],
                ROLE_COLORS["rng"],
                lw=0.4,
                ls=":",
                alpha=0.6,
                rad=0.0 if pos[p][0] <= 1 else 0.12,
            )


def _legend(fig, with_solution: bool, show_rng: bool) -> None:
    handles = [
        Patch(facecolor=_tint(ROLE_COLORS["query"], 0.35), edgecolor=ROLE_COLORS["query"], lw=2, label="query"),
        Patch(
            facecolor=_tint(ROLE_COLORS["necessary"]), edgecolor=ROLE_COLORS["necessary"], label="necessary parameter"
        ),
        Patch(
            facecolor=_tint(ROLE_COLORS["unnecessary"]),
            edgecolor=ROLE_COLORS["unnecessary"],
            label="unnecessary parameter",
        ),
        Patch(facecolor="white", edgecolor="#555555", linestyle="--", label="abstract parameter"),
        Line2D([], [], color="#555555", lw=0.9, label="stated dependency"),
        Line2D([], [], color="#555555", lw=0.9, ls="--", label="implied by the structure"),
    ]
    if with_solution:
        handles.append(Patch(facecolor="white", edgecolor=ROLE_COLORS["first_error"], lw=2, label="first error"))
    if show_rng:
        handles.append(Line2D([], [], color=ROLE_COLORS["rng"], lw=0.6, ls=":", label="random constant (RNG)"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 4),
        frameon=False,
        fontsize=7,
        title="n. = step of the solution that defines it",
        title_fontsize=7,
    )
