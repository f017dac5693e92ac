"""dbt integration: spec, manifest reading, node selection, rendering into task descriptions, build-time
parse, profiles from Airflow connections and the runner.

Nothing here imports dbt itself at import or DAG parse time (rendering reads ``manifest.json`` only;
dbt-core is the optional ``[dbt]`` extra) and nothing here imports an Airflow operator.
"""
