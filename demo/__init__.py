"""The demo: a generated shop, a local warehouse (pg_auto_failover formation), the example pipelines.

Run it with ``make demo`` (or ``python -m demo --help``). Nothing here is part of the provider package.
"""
