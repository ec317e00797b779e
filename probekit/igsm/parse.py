"""Problem text -> ``Problem``: the inverse of :mod:`probekit.igsm.render`, from the text alone.

Names are resolved against the record's ``categories`` field ({category: [items]}, top layer first, items
in generator order) when it is given. Without it, the names are looked up in the project's world
vocabulary: its names contain no ``"'s "``, so references split unambiguously, and the items of a layer
are ordered as the vocabulary lists them. Names such as ``"Trader Joe's's Product"`` (official samples)
need ``categories``: references are matched against the known names, longest first, with backtracking,
so ``"'s "``, ``", "`` or ``" and "`` inside a name never split it.
"""

from __future__ import annotations

import re

from probekit.igsm.problem import ABSTRACT, INSTANCE, Param, Problem, Statement
from probekit.igsm.world import World, load_world

_QUESTION = re.compile(r"How many (.+?) does (.+?) have\?")
_SUBJECT_HEAD = "The number of "
_EQUALS = " equals "
_NUM = re.compile(r"(0|[1-9][0-9]?)$")


class ParseError(ValueError):
    """The text is not an iGSM problem of the expected grammar; the message says where and why."""


class _Names:
    """Item and category names of one problem with the reference phrases they form."""

    def __init__(self, categories: list[str], items: list[list[str]]):
        self.categories, self.items = categories, items
        self.where: dict[str, tuple[int, int]] = {}
        for i, layer in enumerate(items):
            for j, name in enumerate(layer):
                if name in self.where or name in categories:
                    raise ParseError(f"ambiguous name {name!r}: it names two things in this problem")
                self.where[name] = (i, j)
        self.by_length = sorted(self.where, key=len, reverse=True)

    def tails(self, i: int, j: int) -> list[tuple[str, Param]]:
        """What can follow ``"<item (i, j)>'s "``: next-layer items and deeper category names."""
        out = (
            [(name, (INSTANCE, i, j, k)) for k, name in enumerate(self.items[i + 1])] if i + 1 < len(self.items) else []
        )
        out += [(self.categories[k], (ABSTRACT, i, j, k)) for k in range(i + 1, len(self.items))]
        return sorted(out, key=lambda t: len(t[0]), reverse=True)

    def match(self, text: str, pos: int) -> list[tuple[Param, int]]:
        """Every parameter phrase ``X's Y`` starting at ``pos``, longest first, with its end."""
        found = []
        for head in self.by_length:
            if text.startswith(head, pos) and text.startswith("'s ", pos + len(head)):
                start = pos + len(head) + 3
                for tail, param in self.tails(*self.where[head]):
                    if text.startswith(tail, start):
                        found.append((param, start + len(tail)))
        return found


def _parse_refs(names: _Names, text: str, pos: int = 0) -> list[tuple[Param, ...]] | None:
    """All ways to read ``text[pos:]`` as ``each A, each B and each C`` (commas, then one " and ")."""
    if not text.startswith("each ", pos):
        return None
    for param, end in names.match(text, pos + 5):
        if end == len(text):
            return [(param,)]
        for sep in (", ", " and "):
            if text.startswith(sep, end):
                rest = _parse_refs(names, text, end + len(sep))
                if rest and (sep == ", " or len(rest[0]) == 1):
                    return [(param,) + rest[0]]
    return None


def _number(text: str, where: str, low: int = 0) -> int:
    if not _NUM.match(text) or not low <= int(text) <= 22:
        raise ParseError(f"{where}: expected a number {low}..22, got {text!r}")
    return int(text)


def _parse_rhs(names: _Names, rhs: str, where: str) -> Statement:
    constant, outer, body = None, None, rhs
    for marker, kind, low in ((" more than ", "add", 0), (" times as much as ", "mul", 1)):
        head, sep, tail = rhs.partition(marker)
        if sep and _NUM.match(head):
            constant, outer, body = _number(head, where, low), kind, tail
            break
    else:
        if _NUM.match(rhs):
            return Statement((), _number(rhs, where))
    inner = "sum"
    for lead, kind in (("the sum of ", "sum"), ("the difference of ", "diff")):
        if body.startswith(lead):
            refs = _parse_refs(names, body[len(lead) :])
            if not refs or len(refs[0]) < 2 or (kind == "diff" and len(refs[0]) != 2):
                raise ParseError(f"{where}: cannot read the operands of {body!r}")
            return Statement(refs[0], constant, outer, kind)
    refs = _parse_refs(names, body)
    if not refs or len(refs[0]) != 1:
        raise ParseError(f"{where}: cannot read {body!r} as a parameter of this problem")
    return Statement(refs[0], constant, outer, inner)


def _split_question(text: str) -> tuple[str, re.Match]:
    found = list(_QUESTION.finditer(text))
    if len(found) != 1:
        raise ParseError(f"expected exactly one question 'How many ... does ... have?', found {len(found)}")
    q = found[0]
    statements = (text[: q.start()] + text[q.end() :]).strip()
    if not statements.endswith("."):
        raise ParseError("the problem statements must end with '.'")
    return statements[:-1], q


def _names_from_world(statements: list[str], question: re.Match, world: World) -> tuple[list[str], list[list[str]]]:
    """Recover the problem's layers from world-vocabulary names (which never contain "'s ")."""
    words: set[str] = {question.group(1), question.group(2)}
    for sentence in statements:
        for ref in re.split(r"(?:, | and | more than | as much as | of | equals )", sentence):
            if ref.startswith("each ") and "'s " in ref:
                head, _, tail = ref[5:].partition("'s ")
                words.update((head, tail))
    items = {w for w in words if w in world.item_home}
    unknown = sorted(w for w in words - items if w not in world.category_home)
    if unknown:
        raise ParseError(f"name(s) not in the world vocabulary and no 'categories' given: {unknown}")
    chains = {world.item_home[w][0] for w in items}
    if len(chains) != 1:
        raise ParseError(f"items come from {len(chains)} different categorizations; pass 'categories'")
    chain = world.chains[chains.pop()]
    depths = sorted({world.item_home[w][1] for w in items})
    layers = range(depths[0], depths[-1] + 1)
    by_layer = [
        sorted((w for w in items if world.item_home[w][1] == d), key=world.item_rank.__getitem__) for d in layers
    ]
    return [chain[d].category for d in layers], by_layer


def parse_problem(text: str, categories: dict[str, list[str]] | None = None, world: World | None = None) -> Problem:
    """Rebuild the problem's structure graph, dependency graph and values from its text (pq or qp).

    Raises :class:`ParseError` with the offending sentence and reason when the text does not parse.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty problem text")
    body, question = _split_question(text)
    sentences = body.split(". ")
    if categories:
        cats, items = list(categories), [list(v) for v in categories.values()]
    else:
        cats, items = _names_from_world(sentences, question, world or load_world())
    names = _Names(cats, items)

    statements: dict[Param, Statement] = {}
    for n, sentence in enumerate(sentences, 1):
        where = f"sentence {n} ({sentence[:60]!r}...)"
        if not sentence.startswith(_SUBJECT_HEAD + "each "):
            raise ParseError(f"{where}: expected 'The number of each X's Y equals ...'")
        pos = len(_SUBJECT_HEAD) + 5
        subject = next(
            (
                (p, end)
                for p, end in names.match(sentence, pos)
                if p[0] == INSTANCE and sentence.startswith(_EQUALS, end)
            ),
            None,
        )
        if subject is None:
            raise ParseError(f"{where}: the subject is not a pair of items of this problem")
        param, end = subject
        if param in statements:
            raise ParseError(f"{where}: {sentence[pos:end]!r} is stated twice")
        statements[param] = _parse_rhs(names, sentence[end + len(_EQUALS) :], where)

    edges = [p[1:] for p in statements]
    for st in statements.values():
        for r in st.refs:
            if r[0] == INSTANCE and r not in statements:
                raise ParseError(f"{_name(names, r)!r} is referenced but no sentence states it")

    what, owner = question.group(1), question.group(2)
    if owner not in names.where:
        raise ParseError(f"the question asks about {owner!r}, which is not an item of this problem")
    i, j = names.where[owner]
    query = next((p for name, p in names.tails(i, j) if name == what), None)
    if query is None or (query[0] == INSTANCE and query not in statements):
        raise ParseError(f"the question asks for {what!r} in {owner!r}, which this problem does not define")
    problem = Problem(cats, items, edges, statements, list(statements), query)
    try:
        problem.topological_params  # noqa: B018  (computing it checks the graph is acyclic)
    except ValueError as err:
        raise ParseError(str(err)) from None
    return problem


def _name(names: _Names, param: Param) -> str:
    kind, i, j, k = param
    return f"{names.items[i][j]}'s {names.items[i + 1][k] if kind == INSTANCE else names.categories[k]}"
