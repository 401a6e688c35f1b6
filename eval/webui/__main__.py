"""Command line: ``python -m eval.webui [--host H] [--port P] [--results-dir DIR] [--reports-dir DIR]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from eval.webui import DEFAULT_HOST, DEFAULT_PORT
from eval.webui.similarity import DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_CHARS


def parse_arguments(arguments: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line of ``python -m eval.webui``."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.webui",
        description="Serve a web page to try a checkpoint on a query and passages, and to browse results.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port to serve on (default: %(default)s)")

    parser.add_argument("--results-dir", type=Path, default=Path("results"), help="folder of results records (default: %(default)s)")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"), help="folder of comparison reports (default: %(default)s)")

    parser.add_argument(
        "--max-candidates",
        type=int,
        default=DEFAULT_MAX_CANDIDATES,
        help="maximum number of candidate passages per request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help="maximum characters of the query and of each passage (default: %(default)s)",
    )
    parser.add_argument(
        "--max-models",
        type=int,
        default=2,
        help="number of loaded models kept in memory; the least recently used is dropped (default: %(default)s)",
    )

    options = parser.parse_args(arguments)
    for name in ("max_candidates", "max_chars", "max_models"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if not 0 < options.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {options.port}")
    return options


def main(arguments: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``python -m eval.webui``."""
    options = parse_arguments(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from eval.webui.app import PageSettings, launch

    settings = PageSettings(
        results_dir=options.results_dir.expanduser().resolve(),
        reports_dir=options.reports_dir.expanduser().resolve(),
        max_candidates=options.max_candidates,
        max_chars=options.max_chars,
        model_capacity=options.max_models,
    )
    try:
        launch(settings, host=options.host, port=options.port)
    except OSError as error:
        # Gradio's own message here points at GRADIO_SERVER_PORT, not at this command's options.
        logging.getLogger("eval.webui").error("Could not serve on %s:%d: %s", options.host, options.port, error)
        print(
            f"error: could not serve on {options.host}:{options.port}: the port is in use or the address "
            "is not one of this machine's; pass --port with a free port or --host with a local address",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
