"""Hooks: failover-aware PostgreSQL, pg_auto_failover monitor."""
