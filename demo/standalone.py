"""``make airflow`` / ``python -m demo --standalone``: ``airflow standalone`` over the demo's stack.

The same source (with the generated shop), the same warehouse (formation or ``--plain``) and the same
configs as ``make demo``; the connections reach ``airflow standalone`` (scheduler, API server, DAG
processor, triggerer) through ``AIRFLOW_CONN_*`` in its environment. Ctrl-C stops Airflow and every
database server.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from demo.stack import Stack, airflow_bin

UTC = timezone.utc


def run_standalone(plain: bool = False, days: int = 3, seed: int = 42) -> int:
    """Start the stack, generate the shop, run ``airflow standalone`` until Ctrl-C."""
    from demo.shop import Shop, demo_days, describe

    stack = Stack(plain=plain)
    try:
        stack.start()
        assert stack.source is not None
        now = datetime.now(UTC)
        print(f"==> generating the shop (seed {seed}) up to {now:%Y-%m-%d %H:%M} UTC", flush=True)
        print(describe(Shop(stack.source.dsn("shop"), seed=seed).build([*demo_days(days), now.date()], until=now)))
        log = stack.demo_dir / "logs" / "standalone.log"
        proc = stack.spawn([airflow_bin(), "standalone"], log)
        password_file = stack.airflow_home / "simple_auth_manager_passwords.json.generated"
        print(stack.describe(), flush=True)
        print(f"==> airflow standalone is starting (log: {log}); UI: http://localhost:8080", flush=True)
        print("    DAGs start paused: trigger one in the UI (a manual run of a daily pipeline covers the last "
              "complete day); runs, retries and task logs show there. Ctrl-C stops Airflow and every server.",
              flush=True)
        shown = False
        while proc.poll() is None:
            if not shown and password_file.exists():
                print(f"    login: see {password_file} (user admin)", flush=True)
                shown = True
            time.sleep(1)
        print(f"airflow standalone exited with {proc.returncode}; see {log}", flush=True)
        return proc.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping airflow standalone and every server", flush=True)
        return 130
    finally:
        stack.close()
