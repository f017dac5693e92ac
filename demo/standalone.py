"""``make airflow`` / ``python -m demo --standalone``: the demo's deployment, left running for the UI.

The same source (with the generated shop), the same warehouse (formation or ``--plain``), the same configs
and the same real Airflow as ``make demo`` (:mod:`devstack.airflow_stack`: scheduler, DAG processor,
triggerer, API server with the UI, LocalExecutor, PostgreSQL metadata), with the connections as
``AIRFLOW_CONN_*`` in its environment. Ctrl-C stops Airflow and every database server.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

from demo.stack import CONN_MONITOR, CONN_SOURCE, CONN_WAREHOUSE, Stack
from devstack.airflow_env import connection_env_name
from devstack.airflow_stack import ADMIN_USER, AirflowStack

UTC = timezone.utc
UI_PORT = 8080
# Where the provider's plugin (airflow_provider_dataeng.dashboard.plugin) puts the ingestion dashboard: an
# entry of the UI's Browse menu (Airflow 3.1+: <UI>/plugin/<url_route>) and the page itself. Not imported from
# there: the demo's own process does not import Airflow (tests/test_demo_shop.py checks they agree).
DASHBOARD_UI_ROUTE = "plugin/dataeng-ingestion"
DASHBOARD_PAGE = "dataeng/dashboard/"


def dashboard_urls(base_url: str = f"http://127.0.0.1:{UI_PORT}") -> tuple[str, str]:
    """(the dashboard inside the Airflow UI, the page on its own) under ``base_url``."""
    base = base_url.rstrip("/")
    return f"{base}/{DASHBOARD_UI_ROUTE}", f"{base}/{DASHBOARD_PAGE}"


def dashboard_hint() -> str:
    """What ``make demo`` prints last: where the ingestion dashboard is once ``make airflow`` runs."""
    in_ui, page = dashboard_urls()
    return (f"==> the ingestion dashboard: run `make airflow`, sign in, then open {in_ui} (Browse > Ingestion;\n"
            f"    the page alone: {page}). Port {UI_PORT} when it is free; `make airflow` prints the URL it uses.")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def run_standalone(plain: bool = False, days: int = 3, seed: int = 42) -> int:
    """Start the stack, generate the shop, start Airflow and keep everything running until Ctrl-C."""
    import os
    import shutil

    from devstack.shop import Shop, demo_days, describe

    stack = Stack(plain=plain)
    airflow: AirflowStack | None = None
    try:
        stack.start()
        assert stack.source is not None
        now = datetime.now(UTC)
        print(f"==> generating the shop (seed {seed}) up to {now:%Y-%m-%d %H:%M} UTC", flush=True)
        print(describe(Shop(stack.source.dsn("shop"), seed=seed).build([*demo_days(days), now.date()], until=now)))
        shutil.rmtree(stack.airflow_home, ignore_errors=True)
        connections = {c: os.environ[connection_env_name(c)] for c in (CONN_SOURCE, CONN_WAREHOUSE, CONN_MONITOR)
                       if connection_env_name(c) in os.environ}
        print("==> starting Airflow: scheduler, DAG processor, triggerer, API server (about a minute)", flush=True)
        airflow = AirflowStack(stack.airflow_home, connections=connections, metadata_cluster=stack.source,
                               port=UI_PORT if _port_free(UI_PORT) else None)
        airflow.start()
        print(stack.describe(), flush=True)
        in_ui, page = dashboard_urls(airflow.base_url)
        print(f"==> Airflow is running: UI {airflow.base_url}  (user {ADMIN_USER}, password {airflow.password})\n"
              f"    ingestion dashboard: {in_ui}  (Browse > Ingestion; the page alone: {page})\n"
              f"    logs: {airflow.logs_dir}\n"
              "    DAGs start paused. Unpausing a daily pipeline lets the scheduler run its last complete day;\n"
              "    the Trigger button (no logical date) runs that same last complete interval, or the interval\n"
              '    given in the run\'s conf ({"interval_start": "...", "interval_end": "..."}). dbt_marts runs\n'
              "    when the four extract DAGs have published (their asset events). Ctrl-C stops Airflow and every "
              "server.", flush=True)
        while True:
            time.sleep(2)
            dead = airflow.exited_components()
            if dead:
                print(f"Airflow component(s) exited: {', '.join(dead)}\n{airflow.log_tails(dead)}", flush=True)
                return 1
    except KeyboardInterrupt:
        print("\nstopping Airflow and every server", flush=True)
        return 130
    finally:
        if airflow is not None:
            airflow.stop()
        stack.close()
