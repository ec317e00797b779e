"""``probekit figures EXPERIMENT.yaml``: redraw the papers' figures and ``REPORT.md`` from a results store.

Wire it in ``probekit/cli.py`` with ``from probekit.figures.command import register; register(sub)``; ``register``
adds the subcommand and sets ``func=run_command``, which returns the exit status (0 ok, 2 bad input).

The experiment YAML is a sweep config; only three top-level keys are read:

- ``name`` (str): the results folder defaults to ``out/<name>`` (relative to the working directory);
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


class ExperimentError(ValueError):
    """The experiment file or an option is unusable; the message says which key and what is allowed."""


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
    p.add_argument("experiment", metavar="EXPERIMENT.yaml", help="sweep config (reads its name, results and figures keys)")
    p.add_argument("--results", metavar="DIR", help="results folder holding results.parquet (default: the YAML's "
                   "`results`, else out/<name>)")
    p.add_argument("--out", metavar="DIR", help="where figures and REPORT.md go (default: RESULTS/figures)")
    p.add_argument("--only", metavar="NAMES", help=f"comma list of figures to draw, overriding the YAML ({ALLOWED})")
    p.add_argument("--json", action="store_true", help='print [{"figure", "files", "skipped", "n_rows"}] on stdout')
    p.add_argument("--quiet", action="store_true", help="no table on stderr")
    p.set_defaults(func=run_command)
    return p


def _check_names(names, where: str) -> list[str]:
    unknown = [n for n in names if n not in FIGURE_NAMES]
    if unknown:
        raise ExperimentError(f"{where}: unknown figure(s) {', '.join(map(repr, unknown))}; allowed: {ALLOWED}")
    return list(names)


def _figures_key(value, path: Path) -> tuple[list[str] | None, dict[str, dict]]:
    """The ``figures`` key as (names, options)."""
    where = f"{path}: key 'figures'"
    if value is None:
        return None, {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _check_names(value, where), {}
    if isinstance(value, dict):
        names = _check_names([str(k) for k in value], where)
        bad = [n for n, opts in value.items() if opts is not None and not isinstance(opts, dict)]
        if bad:
            raise ExperimentError(f"{where}: the options of {', '.join(bad)} must be a mapping option -> value")
        return names, {str(n): dict(opts or {}) for n, opts in value.items()}
    raise ExperimentError(f"{where} must be a list of figure names or a mapping name -> options, "
                          f"not {type(value).__name__}; allowed names: {ALLOWED}")


def load_request(path: str | Path, results: str | Path | None = None) -> Request:
    """Read the experiment YAML (keys ``name``, ``results``, ``figures``); ``results`` overrides its folder."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"no experiment file {path}") from None
    except (OSError, yaml.YAMLError) as err:
        raise ExperimentError(f"cannot read {path}: {err}") from None
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise ExperimentError(f"{path} must be a mapping of keys (name, results, figures), not {type(config).__name__}")
    for key in ("name", "results"):
        if key in config and not (isinstance(config[key], str) and config[key]):
            raise ExperimentError(f"{path}: key {key!r} must be a non-empty string, not {config[key]!r}")
    names, options = _figures_key(config.get("figures"), path)
    if results is None:
        if "results" not in config and "name" not in config:
            raise ExperimentError(f"{path} needs key 'name' (results go to out/<name>) or 'results', or pass --results")
        results = config.get("results") or Path("out") / config["name"]
    return Request(Path(results), names, options)


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


def run_command(args) -> int:
    """Run ``probekit figures`` from parsed arguments; returns the exit status."""
    from probekit.figures.registry import check_request

    try:
        request = load_request(args.experiment, args.results)
        if args.only:
            request.names = _check_names([n.strip() for n in args.only.split(",") if n.strip()], "--only")
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
    report = write_report(results, out, figure_results)
    if args.json:
        print(json.dumps([fr.to_dict() for fr in figure_results]))
    if not args.quiet:
        _print_table(figure_results, out, report)
    return 0
