"""DbtKubernetesPodOperator: dbt in a separate image, a KubernetesPodOperator whose profile comes from an Airflow connection.

The pod needs only dbt-postgres and the project (no Airflow, no this package): its command writes the
generated profiles.yml (no secret inside, passed as ``DATAENG_DBT_PROFILES_YML``) and runs dbt with
``target/`` and logs in ``/tmp``. Non-secret connection fields become env vars when the pod is built
(at run time, never at DAG parse time); the password comes from a Kubernetes Secret as
``DBT_ENV_SECRET_PASSWORD`` (a ``secretKeyRef``), so it is in neither the pod spec nor the task's
rendered fields. Inside the KubernetesExecutor's own task pod (same image as Airflow) use
:class:`~airflow_provider_dataeng.operators.dbt.DbtOperator` instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from airflow_provider_dataeng.connections import connect
from airflow_provider_dataeng.dbt.profile import (
    PASSWORD_ENV,
    PROFILE_NAME,
    TARGET_NAME,
    profile_from_connection,
)
from airflow_provider_dataeng.dbt.spec import COMMANDS, DbtPodSpec
from airflow_provider_dataeng.specs import spec_default
from airflow_provider_dataeng.values import as_list

PROFILES_ENV = "DATAENG_DBT_PROFILES_YML"
POD_SCRIPT = (
    'set -eu; d="${TMPDIR:-/tmp}/dbt-profile"; mkdir -p "$d"; '
    f'printf "%s" "${PROFILES_ENV}" > "$d/profiles.yml"; exec dbt "$@" --profiles-dir "$d"'
)


class DbtKubernetesPodOperator(KubernetesPodOperator):
    """Run ``dbt <command>`` in a pod of ``image`` with the profile taken from ``conn_id``.

    :param conn_id: the warehouse's Airflow connection (hosts, port, user, database).
    :param image: an image with dbt-postgres and the project at ``project_dir``.
    :param password_secret: name of a Kubernetes Secret holding the connection's password; required
        when the connection has a password (it is never copied into the pod spec).
    :param password_secret_key: key of the password inside that Secret.
    Every dbt parameter is a field of :class:`~airflow_provider_dataeng.dbt.spec.DbtPodSpec`; remaining
    kwargs go to KubernetesPodOperator. A factory dbt task with ``pod:`` renders its tasks as this operator.
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "dbt_select", "dbt_exclude")

    def __init__(
        self,
        *,
        conn_id: str,
        image: str,
        command: str = spec_default(DbtPodSpec, "command"),
        project_dir: str = spec_default(DbtPodSpec, "project_dir"),
        select: list[str] | str | None = spec_default(DbtPodSpec, "select"),
        exclude: list[str] | str | None = spec_default(DbtPodSpec, "exclude"),
        selector: str | None = spec_default(DbtPodSpec, "selector"),
        vars: dict[str, Any] | None = spec_default(DbtPodSpec, "vars"),
        full_refresh: bool = spec_default(DbtPodSpec, "full_refresh"),
        target_schema: str | None = spec_default(DbtPodSpec, "target_schema"),
        threads: int = spec_default(DbtPodSpec, "threads"),
        indirect_selection: str | None = spec_default(DbtPodSpec, "indirect_selection"),
        password_secret: str | None = spec_default(DbtPodSpec, "password_secret"),
        password_secret_key: str = spec_default(DbtPodSpec, "password_secret_key"),
        **kwargs: Any,
    ) -> None:
        if command not in COMMANDS:
            raise ValueError(f"command={command!r}: expected one of {', '.join(COMMANDS)}")
        if not image:
            raise ValueError("image is empty: expected an image with dbt-postgres and the project")
        if "cmds" in kwargs or "arguments" in kwargs:
            raise ValueError("cmds/arguments are generated from the dbt parameters; do not pass them")
        args = [*command.split(), "--project-dir", project_dir, "--profile", PROFILE_NAME, "--target", TARGET_NAME,
                "--target-path", "/tmp/dbt-target", "--log-path", "/tmp/dbt-logs", "--threads", str(int(threads)),
                "--no-use-colors", "--no-send-anonymous-usage-stats", "--no-version-check"]
        for flag, value in (("--select", select), ("--exclude", exclude)):
            if value:
                args += [flag, *as_list(value)]
        if selector:
            args += ["--selector", selector]
        if vars:
            args += ["--vars", json.dumps(vars)]
        if full_refresh and command in ("build", "run", "seed"):
            args.append("--full-refresh")
        if indirect_selection and command in ("build", "test"):
            args += ["--indirect-selection", indirect_selection]
        secrets = list(kwargs.pop("secrets", None) or [])
        if password_secret:
            secrets.append(Secret("env", PASSWORD_ENV, password_secret, password_secret_key))
        kwargs.setdefault("name", f"dbt-{command.split()[0]}")
        super().__init__(image=image, cmds=["/bin/sh", "-c", POD_SCRIPT, "dbt"], arguments=args, secrets=secrets, **kwargs)
        self.conn_id = conn_id
        self.dbt_select = select
        self.dbt_exclude = exclude
        self.target_schema = target_schema
        self.threads = int(threads)
        self.indirect_selection = indirect_selection
        self.password_secret = password_secret
        self._base_env = list(self.env_vars or [])

    def profile_env(self) -> list[k8s.V1EnvVar]:
        """Env vars carrying the generated profile (no secret); reads the connection (run time only)."""
        hook = connect(self.conn_id, role="warehouse")
        profile, password = profile_from_connection(
            hook, target_schema=self.target_schema, threads=self.threads  # type: ignore[arg-type]
        )
        if password and not self.password_secret:
            raise ValueError(
                f"password_secret is not set but connection {self.conn_id!r} has a password: create a Kubernetes "
                "Secret with it and pass its name (the password is never put into the pod spec)"
            )
        env = {PROFILES_ENV: profile.profiles_yml(), **profile.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        return [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        self.env_vars = [*self._base_env, *self.profile_env()]
        return super().build_pod_request_obj(context, dry_run=dry_run)

