"""dbt integration: manifest reading, node selection, DAG rendering, build-time parse, Kubernetes pods.

Nothing here imports dbt itself at DAG parse time: rendering reads ``manifest.json`` only.
"""
