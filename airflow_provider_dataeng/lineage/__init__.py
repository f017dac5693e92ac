"""OpenLineage for extract, publish, quality and dbt tasks (docs/lineage.md).

The operators' ``get_openlineage_facets_on_start/on_complete`` call :mod:`.tasks`; nothing here imports
OpenLineage or the Airflow OpenLineage provider at module level, so the provider and every DAG import and
parse without ``apache-airflow-providers-openlineage`` installed. The dataset identity (namespace, name) of
a table comes from the Asset identity (:mod:`airflow_provider_dataeng.publish.assets`), see :mod:`.datasets`.
"""
