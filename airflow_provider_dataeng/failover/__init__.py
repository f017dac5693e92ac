"""Failover health: is there exactly one primary, enough secondaries, little lag, the expected sync state?

Two sources: a pg_auto_failover monitor (:mod:`.formation_health`) or, without one, every host of a
multi-host connection (:mod:`.replication_health`). Both produce a :class:`HealthVerdict`.
"""

from airflow_provider_dataeng.failover.health_check import FailoverHealthCheck
from airflow_provider_dataeng.failover.verdict import HealthCriteria, HealthVerdict, NodeRow

__all__ = ["FailoverHealthCheck", "HealthCriteria", "HealthVerdict", "NodeRow"]
