"""Airflow provider for idempotent, quality-gated PostgreSQL pipelines (extract, publish, dbt, SLAs, health)."""

__version__ = "0.1.0"
