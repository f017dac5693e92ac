"""Test, demo and benchmark support: throwaway PostgreSQL clusters, Airflow home, DAG runs."""
