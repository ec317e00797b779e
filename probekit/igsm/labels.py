"""The six V-probe labels of the paper (nece, dep, known, value, can_next, nece_next) for one solution.

Labels follow the authors' ``lora_label`` / ``lora_label2("dep")`` on the whole template
(``official-samples.md`` section 4), with probekit's parameter set: ``problem.params`` (stated instance
parameters and every abstract parameter). Instance pairs that are not structure edges, which the authors
also list, are left out; they have no edges, so no other label depends on them.

Step ``t`` is the state after the first ``t`` sentences of the solution:

- ``known``: the problem parameters those sentences define, in definition order (a name defined twice
  counts once; unparseable sentences and names that are not problem parameters define nothing);
- ``can_next``: parameters not known whose direct predecessors (RNG aside) are all known;
- ``nece_next``: ``can_next`` ∩ ``nece``;
- ``value``: {known name: its true value}.

Lists are in ``problem.params`` order except ``known`` (definition order) and ``nece`` (see ``Labels``).
"""

from __future__ import annotations

from dataclasses import dataclass

from probekit.igsm.check import defined_names
from probekit.igsm.problem import MOD, Param, Problem

UNKNOWN_VALUE = MOD  # the value class of a parameter that is not known yet (classes 0..22 are values)


@dataclass(frozen=True)
class Labels:
    """Probe labels of one problem along one solution.

    ``nece`` lists the necessary parameters in the order the solution defines them, then the necessary
    parameters it never defines in ``problem.topological_params`` order. ``dep`` holds (A, B) whenever B is a
    proper ancestor of A in the whole template (RNG excluded), A then B in ``params`` order. ``distance``
    maps each necessary parameter to its shortest dependency distance to the query (query: 0).
    ``steps[t]`` is ``{"t", "known", "can_next", "nece_next", "value"}`` for t = 0..T.
    """

    params: list[str]
    nece: list[str]
    dep: list[tuple[str, str]]
    distance: dict[str, int]
    steps: list[dict]

    def to_dict(self) -> dict:
        """A JSON-ready dict (``dep`` pairs as lists)."""
        return {
            "params": list(self.params),
            "nece": list(self.nece),
            "dep": [list(pair) for pair in self.dep],
            "distance": dict(self.distance),
            "steps": self.steps,
        }

    def value_label(self, t: int, name: str) -> int:
        """The value probe's class for ``name`` at step ``t``: its value 0..22, or 23 if not known yet."""
        return self.steps[t]["value"].get(name, UNKNOWN_VALUE)


def compute_labels(problem: Problem, solution: str | None = None) -> Labels:
    """Labels of ``problem`` along ``solution`` (default: the reference order, ``problem.reference_order``)."""
    sentences = _sentence_params(problem, solution)
    defined = list(dict.fromkeys(p for p in sentences if p is not None))
    nece = [p for p in defined if p in problem.necessary]
    nece += [p for p in problem.topological_params if p in problem.necessary and p not in nece]
    name = problem.name
    distance = problem.distance_to_query()
    return Labels(
        params=[name(p) for p in problem.params],
        nece=[name(p) for p in nece],
        dep=[(name(a), name(b)) for a in problem.params for b in problem.params if b in problem.ancestors[a]],
        distance={name(p): distance[p] for p in problem.params if p in distance},
        steps=_steps(problem, sentences),
    )


def _sentence_params(problem: Problem, solution: str | None) -> list[Param | None]:
    """Per sentence, the problem parameter it defines (``None`` where it defines none)."""
    if solution is None:
        return list(problem.reference_order)
    by_name = {problem.name(p): p for p in problem.params}
    return [by_name.get(n) if n is not None else None for n in defined_names(solution)]


def _steps(problem: Problem, sentences: list[Param | None]) -> list[dict]:
    """The per-position labels for t = 0..len(sentences)."""
    name, values, parents = problem.name, problem.values, problem.parents
    known: dict[Param, None] = {}
    steps = []
    for t in range(len(sentences) + 1):
        done = sentences[t - 1] if t else None
        if done is not None:
            known.setdefault(done)
        can_next = [p for p in problem.params if p not in known and all(q in known for q in parents[p])]
        steps.append(
            {
                "t": t,
                "known": [name(p) for p in known],
                "can_next": [name(p) for p in can_next],
                "nece_next": [name(p) for p in can_next if p in problem.necessary],
                "value": {name(p): values[p] for p in known},
            }
        )
    return steps
