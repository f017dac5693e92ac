"""``python -m demo``: the example pipelines end to end on a real Airflow and local PostgreSQL (``make demo``).

    python -m demo                 # pg_auto_failover warehouse, 3 daily intervals
    python -m demo --plain         # a single plain warehouse cluster (also: DEMO_WAREHOUSE=plain)
    python -m demo --days 2        # fewer intervals (at least 2)
    python -m demo --keep          # keep the databases running after the summary, until Ctrl-C
    python -m demo --standalone    # `airflow standalone` over the same configs and databases (make airflow)

Every server the demo starts is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from demo.stack import install_signal_handlers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", action="store_true", default=os.environ.get("DEMO_WAREHOUSE") == "plain",
                        help="a single plain PostgreSQL warehouse instead of a pg_auto_failover formation")
    parser.add_argument("--days", type=int, default=3, help="daily intervals to run (default 3, minimum 2)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated shop (default 42)")
    parser.add_argument("--standalone", action="store_true",
                        help="run `airflow standalone` over the same configs and local databases")
    parser.add_argument("--keep", action="store_true", help="keep the stack running after the summary")
    args = parser.parse_args(argv)
    if args.days < 2:
        parser.error("--days: expected at least 2 (the demo reruns a middle interval)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    if args.standalone:
        from demo.standalone import run_standalone

        return run_standalone(plain=args.plain, days=args.days, seed=args.seed)

    from demo.run import Demo, DemoOptions, report_json
    from demo.standalone import dashboard_hint
    from demo.summary import render_report

    options = DemoOptions(days=args.days, plain=args.plain, seed=args.seed, keep=args.keep)
    demo = Demo(options, log=lambda line: print(line, flush=True))
    started = time.monotonic()
    try:
        report = demo.run()
        print(render_report(report), flush=True)
        out = demo.stack.demo_dir / "report.json"
        out.write_text(json.dumps(report_json(report), indent=2, default=str))
        if args.keep:
            print(demo.stack.describe(), flush=True)
            print("Stack kept running; Ctrl-C stops every server.", flush=True)
            while True:
                time.sleep(3600)
        return 0 if not report.failed_runs and report.idempotent else 1
    except KeyboardInterrupt as exc:
        print(f"\n{exc or 'interrupted'}: stopping every server", file=sys.stderr, flush=True)
        return 130
    finally:
        t0 = time.monotonic()
        demo.close()
        print(f"==> every server stopped ({time.monotonic() - t0:.0f} s); "
              f"total {time.monotonic() - started:.0f} s", flush=True)
        print(dashboard_hint(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
