"""Command line: ``python -m retune <command>``.

Commands:
    tune-worker   run one trial worker of a prepared retune (``--ctx`` is the JSON from prepare)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="retune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("tune-worker", help="run one trial worker on a prepared retune's study")
    worker.add_argument("--ctx", required=True, help="the retune context (JSON) returned by retune.pipeline.prepare")
    worker.add_argument("--worker", type=int, default=0, help="this worker's index")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "tune-worker":
        from retune.pipeline import tune_worker

        print(json.dumps(tune_worker(json.loads(args.ctx), args.worker)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
