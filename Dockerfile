# The Airflow image for docker-compose.yaml (and for the KubernetesExecutor, see docs/deploying.md):
# the official Airflow 3 image plus this provider, installed with the locked versions (constraints.txt).
#   docker build -t airflow-provider-dataeng:local .
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
WORKDIR /opt/dataeng
COPY --chown=airflow:root setup.cfg pyproject.toml README.md constraints.txt ./
COPY --chown=airflow:root airflow_provider_dataeng ./airflow_provider_dataeng
# Pin apache-airflow to the image's version so pip never up- or downgrades Airflow itself.
RUN pip install --no-cache-dir -c constraints.txt "apache-airflow==${AIRFLOW_VERSION}" ".[dbt]" \
 && python -c "import airflow_provider_dataeng.get_provider_info as p; print(p.get_provider_info()['versions'])"

# DAGs (dags/ with dags/configs/) and the dbt project are mounted by docker-compose.yaml; in a
# production image copy them instead (see docs/deploying.md):
#   COPY --chown=airflow:root dags /opt/airflow/dags
#   COPY --chown=airflow:root dbt_project /opt/airflow/dbt_project
WORKDIR /opt/airflow
