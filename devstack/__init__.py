"""The development stack used by tests, the demo and benchmarks alike.

Throwaway PostgreSQL clusters (:mod:`devstack.pg`), pg_auto_failover formations (:mod:`devstack.formation`),
an isolated Airflow home with connections and DAG runs (:mod:`devstack.airflow_env`) and a local webhook
receiver (:mod:`devstack.webhook_receiver`). Not part of the provider distribution: it is importable from the
repository root (the test runner, ``python -m demo``, and the venv's ``.pth`` entry written by
``scripts/bootstrap.sh`` for the benchmarks).
"""
