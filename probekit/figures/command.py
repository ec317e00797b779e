"""``probekit figures EXPERIMENT.yaml``: redraw the papers' figures and ``REPORT.md`` from a results store.

Wire it in ``probekit/cli.py`` with ``from probekit.figures.command import register; register(sub)``; ``register``
adds the subcommand and sets ``func=figures_command``, which returns the exit status (0 ok, 2 bad input).

The experiment YAML is a sweep config, checked as ``probekit run`` checks it (paths and jobs aside); three
top-level keys are used here:

- ``name`` (str, default: the file's stem): the results folder defaults to ``out/<name>`` (relative to the
  working directory);
- ``results`` (str, optional): the results folder instead;
- ``figures`` (optional): a list of figure names, or a mapping ``name -> {option: value}``; default: every figure.

The store is ``RESULTS/results.parquet``; figures and ``REPORT.md`` go to ``--out`` (default ``RESULTS/figures``).
A figure whose rows are absent is skipped with the reason. Importing this module loads neither matplotlib nor
pandas.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from probekit.figures.names import FIGURE_NAMES

ALLOWED = ", ".join(FIGURE_NAMES)


@dataclass
class Request:
    """What to draw: the results folder, the figure names (None: all) and per-figure options."""

    results: Path
    names: list[str] | None = None
    options: dict[str, dict] = field(default_factory=dict)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``figures`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "figures",
        help="redraw the papers' figures and REPORT.md from a results store",
        description="Read RESULTS/results.parquet (written by `probekit run EXPERIMENT.yaml`) and write every figure "
        f"(PNG + PDF + caption) and REPORT.md. Figures: {ALLOWED}.",
    )
    p.add_argument(
        "experiment", metavar="EXPERIMENT.yaml", help="sweep config (reads its name, results and figures keys)"
    )
    p.add_argument(
        "--results",
        metavar="DIR",
        help="results folder holding results.parquet (default: the YAML's `results`, else out/<name>)",
    )
    p.add_argument("--out", metavar="DIR", help="where figures and REPORT.md go (default: RESULTS/figures)")
    p.add_argument("--only", metavar="NAMES", help=f"comma list of figures to draw, overriding the YAML ({ALLOWED})")
    p.add_argument("--json", action="store_true", help='print [{"figure", "files", "skipped", "n_rows"}] on stdout')
    p.add_argument("--quiet", action="store_true", help="no table on stderr")
    p.set_defaults(func=figures_command)
    return p


def load_request(path: str | Path, results: str | Path | None = None) -> Request:
    """The figure request of an experiment (sweep) file, read with the sweep checks
    (:func:`probekit.sweep.config.load_sweep`; no job needed): its results folder (``results`` overrides it;
    default ``out/<name>``) and its ``figures`` key (names, or name -> options)."""
    from probekit.sweep.config import load_sweep

    cfg = load_sweep(path, check_paths=False, require_jobs=False)
    return Request(Path(results) if results is not None else cfg.results_dir, list(cfg.figures) or None, cfg.figures)


def _error(msg: str) -> int:
    print(f"probekit figures: error: {msg}", file=sys.stderr)
    return 2


def _print_table(figure_results, out: Path, report: Path) -> None:
    print(f"figures -> {out}", file=sys.stderr)
    width = max(len(fr.name) for fr in figure_results) if figure_results else 0
    for fr in figure_results:
        status = f"skipped  {fr.skipped}" if fr.skipped else f"written  {len(fr.paths)} files"
        print(f"  {fr.name:<{width}}  {status}  ({fr.n_rows} rows)", file=sys.stderr)
    print(f"report: {report}", file=sys.stderr)


def figures_command(args) -> int:
    """Run ``probekit figures`` from parsed arguments; returns the exit status."""
    from probekit.figures.registry import check_request

    try:
        request = load_request(args.experiment, args.results)
        if args.only:
            request.names = [n.strip() for n in args.only.split(",") if n.strip()]
        check_request(request.names, request.options)
    except ValueError as err:
        return _error(str(err))
    store = request.results / "results.parquet"
    if not store.is_file():
        return _error(f"no results store at {store}: run `probekit run {args.experiment}` first")

    import pandas as pd

    from probekit.figures.registry import render
    from probekit.figures.report import write_report

    try:
        results = pd.read_parquet(store)
    except (OSError, ValueError) as err:
        return _error(f"cannot read {store}: {err}")
    out = Path(args.out) if args.out else request.results / "figures"
    figure_results = render(results, request.names, out, request.options)
    from probekit.sweep.store import ResultsStore

    missing = ResultsStore(request.results).missing_jobs()
    report = write_report(results, out, figure_results, missing)
    if missing:
        print(
            f"probekit figures: {len(missing)} job(s) of the experiment have no rows (listed in {report})",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps([fr.to_dict() for fr in figure_results]))
    if not args.quiet:
        _print_table(figure_results, out, report)
    return 0
