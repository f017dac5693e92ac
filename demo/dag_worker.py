"""A child process that runs ``airflow dags test <dag_id> <logical_date>`` for each request it reads.

Airflow's own CLI parser and command function run here, exactly as ``airflow dags test`` would, but
one process serves many runs: each fresh ``airflow dags test`` pays ~4 s of imports plus ~6 s to build
the in-process execution API on its first task (measured on this 2-core machine); later runs in the
same process start in ~0.2 s. ``python -m demo --one-process-per-run`` uses plain ``airflow dags test``
subprocesses instead.

Protocol: one JSON object per line on stdin (``{"dag_id": .., "logical_date": ..}``), one JSON result
per line on the ORIGINAL stdout (``{"dag_id", "logical_date", "rc", "seconds", "error"}``). Airflow's
own output (task logs) goes to the log file named by ``argv[1]``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    log_path = sys.argv[1]
    results = os.fdopen(os.dup(1), "w", buffering=1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)

    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    results.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        dag_id, logical_date = request["dag_id"], request["logical_date"]
        print(f"\n===== airflow dags test {dag_id} {logical_date} =====", flush=True)
        start = time.monotonic()
        rc, error = 0, None
        try:
            args = parser.parse_args(["dags", "test", dag_id, logical_date])
            args.func(args)
        except SystemExit as exc:  # "DagRun failed" and argparse errors
            rc = exc.code if isinstance(exc.code, int) else 1
            error = None if isinstance(exc.code, int) else str(exc.code)
        except Exception as exc:  # a DAG that does not parse, a missing DAG id
            rc, error = 1, f"{type(exc).__name__}: {exc}"
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps({"dag_id": dag_id, "logical_date": logical_date, "rc": rc,
                                  "seconds": round(time.monotonic() - start, 2), "error": error}) + "\n")


if __name__ == "__main__":
    main()
