"""Command line: ``python -m eval.report [PATH ...] [--output reports/] [options]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from eval.report import ReportArgumentError, ReportInputError, ReportOptions, build_report
from eval.stats import CI_METHODS, ItemScoresError


def _task_tolerance(text: str) -> tuple[str, float]:
    name, separator, value = text.partition("=")
    try:
        if not separator:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --task-tolerance {text!r}; write TaskName=0.002") from None


def output_folder_problem(output: Path) -> Optional[str]:
    """Return why no report can be written into the folder ``output``, or None when it can be created or used.

    The nearest existing folder on the path must be a folder that this user may write to.
    """
    for folder in (output, *output.parents):
        if not folder.exists():
            continue
        if not folder.is_dir():
            return f"invalid --output {output}: {folder} is a file, not a folder; pass a folder path"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"invalid --output {output}: {folder} is not writable; pass a folder you may write to"
        return None
    return None


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m eval.report``."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.report",
        description="Compare results records: checkpoint table, significance tests, environment drift.",
    )
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("results")], help="results folders or record files (default: results)")
    parser.add_argument("--output", type=Path, default=Path("reports"), help="folder for report.md, report.html, PNG and CSV (default: %(default)s)")
    parser.add_argument("--baseline", help="part of the checkpoint label to test the others against (default: first checkpoint)")
    parser.add_argument("--reference-env", help="drift reference as key=value[,key=value], e.g. transformers=5.23.0 (default: most common environment)")
    parser.add_argument("--tolerance", type=float, default=0.001, help="flag drift where |delta| of the main score exceeds this (default: %(default)s)")
    parser.add_argument("--task-tolerance", type=_task_tolerance, action="append", default=[], metavar="TASK=VALUE", help="per-task drift tolerance, e.g. SciFact=0.002 (repeatable)")
    parser.add_argument("--resamples", type=int, default=10_000, help="resamples of the randomization test and the bootstrap (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default: %(default)s)")
    parser.add_argument("--confidence", type=float, default=0.95, help="bootstrap confidence level (default: %(default)s)")
    parser.add_argument("--ci-method", choices=CI_METHODS, default="BCa", help="bootstrap interval method (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm's correction (default: %(default)s)")
    parser.add_argument("--title", default="Evaluation report", help="report heading")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m eval.report``."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    args = build_parser().parse_args(argv)
    if args.resamples < 100:
        print(f"error: --resamples {args.resamples} is too few for a p-value; use at least 100", file=sys.stderr)
        return 2
    if not 0 < args.confidence < 1 or not 0 < args.alpha < 1:
        print("error: --confidence and --alpha must lie strictly between 0 and 1", file=sys.stderr)
        return 2
    problem = output_folder_problem(args.output)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    options = ReportOptions(
        baseline=args.baseline,
        reference_env=args.reference_env,
        tolerance=args.tolerance,
        task_tolerances=dict(args.task_tolerance),
        n_resamples=args.resamples,
        seed=args.seed,
        confidence=args.confidence,
        ci_method=args.ci_method,
        alpha=args.alpha,
        title=args.title,
    )
    try:
        output = build_report(args.paths, args.output, options)
    except ReportArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ReportInputError, ItemScoresError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    skipped = f" ({len(output.skipped_files)} files skipped as invalid, see the warnings above)" if output.skipped_files else ""
    print(f"Report of {len(output.records)} records written to {args.output}{skipped}:")
    for name, path in output.files.items():
        print(f"  {name}: {path}")
    significant = output.significance[output.significance["significant"] == True]  # noqa: E712
    print(f"  {len(significant)} of {len(output.significance)} comparisons significant after Holm's correction")
    exceeding = output.drift[output.drift["exceeds"] == True]  # noqa: E712
    print(f"  {len(exceeding)} of {len(output.drift)} drift rows beyond tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
