"""YAML pipeline configs -> Airflow DAGs (config models, loader, builder, CLI). Imports nothing heavy."""
