"""Command line: ``python -m retune <command>``.

Commands:
    tune-worker   run one trial worker of a prepared retune (``--ctx`` is the JSON from prepare)
    rollback      move a model's ``champion`` back to ``previous_champion`` in one step
                  (``--config NAME [--why TEXT]``); a second rollback undoes the first

Exit codes: 0 done, 1 refused (e.g. no previous champion, or it does not load), 2 bad usage.
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
    rollback = sub.add_parser(
        "rollback",
        help="move champion back to previous_champion (checks it loads and predicts first)",
        description=(
            "Move the champion alias of the config's registered model back to previous_champion, and "
            "previous_champion to the version that was champion. The target must load and predict its "
            "input example first, or nothing moves. The move is recorded in the alias history "
            "(registered-model tag retune.alias_history) as cli:<os user>."
        ),
    )
    rollback.add_argument("--config", required=True, help="the model config: <name>.yaml in RETUNE_CONFIG_DIR")
    rollback.add_argument("--why", default="manual rollback", help="the reason, recorded in the alias history")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "tune-worker":
        from retune.pipeline import tune_worker

        print(json.dumps(tune_worker(json.loads(args.ctx), args.worker)))
    elif args.command == "rollback":
        from retune.errors import RetuneError
        from retune.registry import default_who, rollback_model

        try:
            result = rollback_model(args.config, who=default_who("cli"), why=args.why)
        except RetuneError as exc:
            print(f"retune rollback: refused: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
