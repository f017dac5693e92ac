"""The ingestion dashboard: an Airflow 3 plugin (FastAPI app + UI entry) over the load ledger.

* :mod:`.plugin` registers the plugin (provider info ``plugins``).
* :mod:`.app` is the FastAPI app mounted at ``/dataeng`` in the API server (Airflow's auth on every data route).
* :mod:`.ledger_queries` reads the ledger and the catalog; :mod:`.calendar` lays intervals out;
  :mod:`.airflow_side` asks Airflow which DAGs a user may read, their timetables and runs.
"""
