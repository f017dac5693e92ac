"""The dbt task specs: one definition of every dbt parameter (name, type, default, description).

- :class:`DbtSpec` is one dbt invocation, i.e. one :class:`~airflow_provider_dataeng.operators.dbt.DbtOperator`
  (whose keyword arguments are exactly these fields) and what the runner takes.
- :class:`DbtRenderSpec` is the factory's ``type: dbt`` task: a selection of a project rendered from
  ``manifest.json`` into DbtOperator tasks (:mod:`airflow_provider_dataeng.dbt.render`); it adds the
  rendering fields to :class:`DbtSpec`, whose fields go to every rendered task.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from airflow_provider_dataeng.specs import ConnId, Duration, StrictModel, StrList, TaskSpec

COMMANDS = ("build", "run", "test", "seed", "snapshot", "source freshness", "compile", "parse", "docs generate")
Command = Literal["build", "run", "test", "seed", "snapshot", "source freshness", "compile", "parse", "docs generate"]
IndirectSelection = Literal["eager", "cautious", "buildable", "empty"]
RenderMode = Literal["model", "group", "single"]
GroupBy = Literal["folder", "tag", "selector"]
TestBehavior = Literal["build", "after_each", "after_all", "none"]


class DbtSpec(TaskSpec):
    """One ``dbt <command>`` against a warehouse's Airflow connection (profile generated at run time)."""

    conn_id: ConnId = Field(description="Airflow PostgreSQL connection of the warehouse (multi-host allowed)")
    project_dir: str = Field(description="The dbt project directory (only read; relative paths in a config "
                                         "are relative to the config file)")
    command: Command = Field(default="build", description="The dbt command")
    select: StrList | None = Field(default=None, description="dbt --select (templated)")
    exclude: StrList | None = Field(default=None, description="dbt --exclude (templated)")
    selector: str | None = Field(default=None, description="A YAML selector name (templated)")
    vars: dict[str, Any] | None = Field(default=None, description="dbt --vars (templated)")
    full_refresh: bool = Field(default=False, description="Pass --full-refresh (build, run, seed)")
    target_schema: str | None = Field(
        default=None, description="Schema of the generated profile (default: the connection extra dbt_schema, "
                                  "else analytics; templated)")
    profiles_dir: str | None = Field(default=None, description="Use this profiles.yml instead of generating one")
    manifest_path: str | None = Field(
        default=None, description="The build-time manifest.json: the operator declares an Asset per selected "
                                  "model (unless outlets are given)")
    use_subprocess: bool = Field(default=False, description="Run the dbt CLI in a child process instead of "
                                                            "in-process dbtRunner")
    dbt_executable_path: str | None = Field(
        default=None, description="Run this dbt executable in a child process (e.g. a dbt installed in another "
                                  "virtualenv: the Airflow environment then needs no dbt)")
    install_deps: bool = Field(default=False, description="Run dbt deps in a per-try copy of the project first "
                                                          "(default: use the packages installed at build time)")
    threads: int = Field(default=1, ge=1, description="dbt threads")
    indirect_selection: IndirectSelection | None = Field(default=None, description="dbt --indirect-selection")
    state_dir: str | None = Field(
        default=None, description="Root of per-run artifacts (default $DATAENG_DBT_STATE_DIR or "
                                  "<tempdir>/dataeng-dbt); a shared volume when retries run in new pods")
    asset_namespace: str | None = Field(default=None, description="Host part of model Asset URIs (default conn_id)")
    docs_dir: str | None = Field(
        default=None, description="command 'docs generate': publish the site (index.html, manifest.json, "
                                  "catalog.json) to <docs_dir>/<dag_id>.<task_id> (default <state root>/docs)")


class DbtPodSpec(TaskSpec):
    """One ``dbt <command>`` in its own Kubernetes pod (an image with dbt-postgres and the project), i.e. one
    :class:`~airflow_provider_dataeng.operators.dbt_pod.DbtKubernetesPodOperator`."""

    conn_id: ConnId = Field(description="Airflow PostgreSQL connection of the warehouse: the pod's profile is "
                                        "generated from it when the pod is built (the password via a Secret)")
    image: str = Field(min_length=1, description="An image with dbt-postgres and the dbt project")
    command: Command = Field(default="build", description="The dbt command")
    project_dir: str = Field(default="/dbt", min_length=1, description="The dbt project's directory in the image")
    select: StrList | None = Field(default=None, description="dbt --select (templated)")
    exclude: StrList | None = Field(default=None, description="dbt --exclude (templated)")
    selector: str | None = Field(default=None, description="A YAML selector name")
    vars: dict[str, Any] | None = Field(default=None, description="dbt --vars")
    full_refresh: bool = Field(default=False, description="Pass --full-refresh (build, run, seed)")
    target_schema: str | None = Field(
        default=None, description="Schema of the generated profile (default: the connection extra dbt_schema, "
                                  "else analytics)")
    threads: int = Field(default=1, ge=1, description="dbt threads")
    indirect_selection: IndirectSelection | None = Field(default=None, description="dbt --indirect-selection")
    password_secret: str | None = Field(
        default=None, description="Kubernetes Secret holding the connection's password (required when the "
                                  "connection has one; the password never enters the pod spec)")
    password_secret_key: str = Field(default="password", min_length=1, description="Key of the password in that "
                                                                                   "Secret")


class KeyRef(StrictModel):
    """A key of a Kubernetes Secret (as a container's ``secretKeyRef``)."""

    name: str = Field(min_length=1, description="The Secret's name")
    key: str = Field(default="password", min_length=1, description="The key inside the Secret")


class DbtPodSettings(StrictModel):
    """``pod:`` of a factory dbt task: every rendered dbt task runs in its own pod of ``image``."""

    image: str = Field(min_length=1, description="An image with dbt-postgres and the dbt project (the project "
                                                 "rendered at parse time, i.e. the same manifest.json)")
    project_dir: str = Field(default="/dbt", min_length=1, description="The dbt project's directory in the image")
    namespace: str | None = Field(default=None, description="Kubernetes namespace of the pods (default: the "
                                                              "KubernetesPodOperator's)")
    key_ref: KeyRef | None = Field(
        default=None, description="The Kubernetes Secret and key holding the warehouse connection's password "
        "(a secretKeyRef; required when the connection has a password, which never enters the pod spec)")
    kubernetes_conn_id: str | None = Field(default=None, description="Airflow Kubernetes connection (default: "
                                                                     "in-cluster / the provider's default)")
    service_account_name: str | None = Field(default=None, description="Service account of the pods")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy")
    labels: dict[str, str] | None = Field(default=None, description="Labels of the pods")

    def operator_kwargs(self) -> dict[str, Any]:
        """KubernetesPodOperator keyword arguments outside :class:`DbtPodSpec` (only those set)."""
        return self.model_dump(include={"namespace", "kubernetes_conn_id", "service_account_name",
                                        "image_pull_policy", "labels"}, exclude_none=True)


class SourceFreshnessSensors(StrictModel):
    """Freshness sensors for the dbt sources the rendered models read (thresholds from the dbt YAML)."""

    deferrable: bool = Field(default=True, description="Wait in the triggerer instead of a worker slot")
    poke_interval: Duration | None = Field(default=None, description="Time between checks")
    timeout: Duration | None = Field(default=None, description="Give up (fail) after this long")
    mode: Literal["poke", "reschedule"] | None = Field(default=None, description="Sensor mode when not deferrable")


class DbtRenderSpec(DbtSpec):
    """A dbt selection rendered from ``manifest.json`` into DbtOperator tasks (the factory's ``type: dbt``)."""

    manifest_path: str | None = Field(default=None, description="Default: <project_dir>/target/manifest.json")
    render: RenderMode = Field(default="model", description="One task per model, per group, or one task")
    group_by: GroupBy = Field(default="folder", description="How render=group groups nodes")
    test_behavior: TestBehavior = Field(
        default="build", description="When tests run: build = in each model's task right after the model (one dbt "
        "build; a failing test stops only the models downstream of it); after_each = a test task after each model "
        "task (downstream models wait for it); after_all = one test task after all models; none = no tests. "
        "render=single takes build or none")
    source_freshness: bool | SourceFreshnessSensors = Field(
        default=False, description="true (or sensor settings): each dbt source with loaded_at_field (or "
        "loaded_at_query) and a freshness block becomes a freshness sensor task upstream of the models that read it")
    pod: DbtPodSettings | None = Field(
        default=None, description="Run every rendered dbt task in its own Kubernetes pod of this image "
        "(KubernetesPodOperator) instead of in the Airflow task (in-process, or dbt_executable_path)")

    @model_validator(mode="after")
    def _command_fits_render(self) -> DbtRenderSpec:
        if self.render != "single" and self.command not in ("build", "run"):
            raise ValueError(f"command={self.command!r}: render={self.render!r} supports build or run "
                             "(render='single' runs any command)")
        if self.render == "single" and self.test_behavior not in ("build", "none"):
            raise ValueError(f"test_behavior={self.test_behavior!r}: render='single' supports build or none")
        if self.pod is not None:
            local = [f for f in ("use_subprocess", "dbt_executable_path", "profiles_dir", "install_deps", "docs_dir",
                                 "state_dir") if f in self.model_fields_set and getattr(self, f)]
            if local:
                raise ValueError(f"pod is set: {', '.join(local)} describe(s) a dbt run in the Airflow task; remove "
                                 "them (the pod runs the image's dbt and project)")
            if self.command == "docs generate":
                raise ValueError("command='docs generate' publishes docs from the Airflow task: not with pod")
        return self

    def pod_spec(self, dbt: DbtSpec) -> DbtPodSpec:
        """The pod task of one rendered dbt invocation ``dbt`` (requires ``pod``)."""
        assert self.pod is not None
        fields = dbt.model_dump(include=set(DbtPodSpec.model_fields) - {"project_dir"}, exclude_unset=True)
        fields.update({k: v for k, v in dbt.model_dump(include={"select", "exclude", "selector", "command",
                                                                 "indirect_selection"}).items() if v is not None})
        pod = {"image": self.pod.image, "project_dir": self.pod.project_dir}
        if self.pod.key_ref is not None:
            pod.update(password_secret=self.pod.key_ref.name, password_secret_key=self.pod.key_ref.key)
        return DbtPodSpec.model_validate({**fields, **pod})

    def freshness_sensors(self) -> SourceFreshnessSensors | None:
        """The sensor settings when source freshness sensors are asked for."""
        if self.source_freshness is False:
            return None
        return SourceFreshnessSensors() if self.source_freshness is True else self.source_freshness

    def operator_fields(self) -> dict[str, Any]:
        """The values set on this spec that every rendered :class:`DbtSpec` task gets."""
        return self.model_dump(include=set(DbtSpec.model_fields), exclude_unset=True)


def spec_error(owner: str, exc: ValidationError) -> ValueError:
    """A ValueError naming ``owner``, each bad field, its value and what was expected."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "value"
        value = err.get("input")
        shown = f"={value!r}" if err.get("type") != "missing" else ""
        parts.append(f"{field}{shown}: {err.get('msg', 'invalid')}")
    return ValueError(f"{owner}: " + "; ".join(parts))
