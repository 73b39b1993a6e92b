"""Command line: ``python -m retune <command>``.

Commands:
    check         validate model configs before deploying them (``[--config NAME ...] [--data]``):
                  every file in RETUNE_CONFIG_DIR, or the named ones; ``--data`` also reads
                  and checks each config's reference and newest training window
    status        where a model stands (``--config NAME [--json]``): champion, challenger and
                  why it was not promoted, the last alias move, a running retune, the newest
                  trigger decisions and their reasons
    tune-worker   run one trial worker of a prepared retune (``--ctx`` is the JSON object from
                  prepare)
    rollback      move a model's ``champion`` back to ``previous_champion`` in one step
                  (``--config NAME [--why TEXT]``); a second rollback undoes the first
    demo-data     write the demo's synthetic data (``retune.demo_data``) where
                  ``include/configs/demo.yaml`` reads it, ``$RETUNE_STATE_DIR/data/demo``
                  (``[--folder PATH] [--days N] [--rows-per-day N] [--seed N]``): seeds a fresh
                  stack or compose volume

Exit codes: 0 done, 1 refused (e.g. a config that does not validate, no previous champion, or
it does not load, no Retune state in RETUNE_STATE_DIR), 2 bad usage (e.g. ``--ctx`` not a
prepared retune's JSON), 3 partial: a part could not be read (``status`` with MLflow or the
policy database unreachable: the rest is printed, the part replaced by its error), 143
``tune-worker`` stopped by SIGTERM (its trial in flight marked failed; 128 + 15, as a shell
reports a process SIGTERM ended).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

TERMINATED = 143  # exit code of a tune-worker stopped by SIGTERM: 128 + 15


def main(argv: list[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="retune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="validate model configs (and with --data, read their data) before deploying them",
        description=(
            "Load and validate every model config in RETUNE_CONFIG_DIR (or the named ones) as the DAGs "
            "would. With --data, also read each config's reference period and newest training window "
            "and check them as a retune would. Nothing is written. Exit code 1 if any config fails."
        ),
    )
    check.add_argument("--config", action="append", help="a config name (repeatable; default: every file)")
    check.add_argument("--data", action="store_true", help="also read and check the data windows")
    check.add_argument("--window-end", help="end of the newest training window, ISO date or datetime (default: now)")
    check.add_argument("--json", action="store_true", help="print one JSON object per config instead of a line")
    status = sub.add_parser(
        "status",
        help="champion, challenger, last alias move, running retune and newest trigger decisions of a model",
        description=(
            "Read-only. If MLflow or the policy database is unreachable, that part is replaced by its error "
            "and the exit code is 3. An MLflow server that does not answer is given up after one retry of "
            "10 s at most, unless MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_TIMEOUT are set."
        ),
    )
    status.add_argument("--config", required=True, help="the model config: <name>.yaml in RETUNE_CONFIG_DIR")
    status.add_argument("--decisions", type=int, default=5, help="how many of the newest trigger decisions (default 5)")
    status.add_argument("--json", action="store_true", help="print JSON")
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
    demo = sub.add_parser(
        "demo-data",
        help="write the demo's synthetic store-demand data to $RETUNE_STATE_DIR/data/demo",
        description=(
            "Write the demo's synthetic data (retune.demo_data: regime changes on day 120 and 180) as one "
            "CSV file per 30 days, to the folder include/configs/demo.yaml reads. Existing files of the "
            "same names are overwritten with the same data (same seed): running it twice is harmless."
        ),
    )
    demo.add_argument("--folder", help="target folder (default: $RETUNE_STATE_DIR/data/demo)")
    demo.add_argument("--days", type=int, default=240, help="days from 2025-01-01 (default 240)")
    demo.add_argument("--rows-per-day", type=int, default=120, help="rows per day (default 120)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "check":
        from retune.checks import check_configs
        from retune.settings import get_settings

        checks = check_configs(args.config, data=args.data, window_end=args.window_end)
        for c in checks:
            print(json.dumps(c.to_json()) if args.json else c.line())
        if not checks:
            from retune.errors import ConfigError

            try:
                folder = get_settings().require_config_dir()
            except ConfigError as exc:
                print(f"retune check: {exc}", file=sys.stderr)
                return 1
            print(f"retune check: no config files in {folder}", file=sys.stderr)
            return 1
        failed = sum(not c.ok for c in checks)
        if not args.json:
            print(f"{len(checks) - failed} of {len(checks)} config(s) ok" + (" (data read)" if args.data else ""))
        return 1 if failed else 0
    if args.command == "status":
        from retune.errors import RetuneError
        from retune.status import model_status, render

        try:
            found = model_status(args.config, decisions=args.decisions)
        except RetuneError as exc:
            print(f"retune status: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(found, default=str) if args.json else render(found))
        return 3 if "registry_error" in found or "policy_error" in found else 0
    if args.command == "demo-data":
        from datetime import timedelta
        from pathlib import Path

        from retune import demo_data
        from retune.settings import get_settings

        if args.days < 1 or args.rows_per_day < 1:
            parser.error("--days and --rows-per-day must be at least 1")
        folder = Path(args.folder) if args.folder else get_settings().state_dir / "data" / "demo"
        files = demo_data.write(folder, days=args.days, rows_per_day=args.rows_per_day, seed=args.seed)
        last = (demo_data.START + timedelta(days=args.days - 1)).date()
        print(
            f"wrote {len(files)} file(s), {args.days * args.rows_per_day:,} rows "
            f"({demo_data.START.date()} .. {last}) to {folder.resolve()}"
        )
        return 0
    if args.command == "tune-worker":
        from retune.errors import RetuneError
        from retune.pipeline import tune_worker

        ctx, problem = _worker_ctx(args.ctx)
        if problem:
            print(f"retune tune-worker: --ctx: {problem}", file=sys.stderr)
            return 2
        from retune.tuning import Terminated

        try:
            result = tune_worker(ctx, args.worker)
        except RetuneError as exc:
            print(f"retune tune-worker: refused: {exc}", file=sys.stderr)
            return 1
        except Terminated as exc:
            print(f"retune tune-worker: {exc}", file=sys.stderr)
            return TERMINATED
        print(json.dumps(result))
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


def _worker_ctx(text: str) -> tuple[dict, str | None]:
    """``--ctx`` as a prepared retune's context, or what is wrong with it.

    Args:
        text: The argument.

    Returns:
        ``(ctx, None)``, or ``({}, problem)``.
    """
    from retune.pipeline import WORKER_CTX_KEYS

    try:
        ctx = json.loads(text)
    except ValueError as exc:
        return {}, f"not JSON ({exc}); pass the JSON object that retune.pipeline.prepare returned"
    if not isinstance(ctx, dict):
        kind = {"list": "array", "str": "string", "int": "number", "float": "number", "bool": "boolean"}.get(
            type(ctx).__name__, "null"
        )
        return {}, f"a JSON {kind}, not the object that retune.pipeline.prepare returned"
    missing = [k for k in WORKER_CTX_KEYS if k not in ctx]
    if missing:
        return {}, f"missing key(s) {', '.join(missing)}: not a context from retune.pipeline.prepare"
    return ctx, None


if __name__ == "__main__":
    sys.exit(main())
