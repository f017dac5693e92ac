"""JSON Schema of pipeline configs and of ``defaults.yaml``, shipped in the package (``airflow_provider_dataeng/schema``).

Generated from the pydantic models (the same ones the factory validates with, so they cannot disagree):
tasks are chosen by their ``type`` (an ``if``/``then`` per type, plus an OpenAPI-style ``discriminator``
annotation for editors that read it); a task without ``type`` but with ``operator:`` is an operator task.

Regenerate after changing a model: ``python -m airflow_provider_dataeng.factory.schema`` (a test checks the
committed files). Users get them with ``dataeng schema`` / ``airflow dataeng schema`` or from the installed
package (``importlib.resources.files("airflow_provider_dataeng") / "schema"``); see docs/configuration.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from airflow_provider_dataeng import __version__
from airflow_provider_dataeng.factory.pipeline import Defaults, Pipeline
from airflow_provider_dataeng.factory.task_types import TASK_TYPES, task_model

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"
KINDS = ("pipeline", "defaults")
SCHEMA_ID = "urn:airflow-provider-dataeng:schema:{name}"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _task_schema(refs: dict[str, str]) -> dict[str, Any]:
    """One task: the model chosen by ``type`` (``operator`` when ``type`` is absent)."""
    branches: list[dict[str, Any]] = [
        {"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": {"$ref": ref}}
        for name, ref in refs.items()
    ]
    branches.append({"if": {"not": {"required": ["type"]}}, "then": {"$ref": refs["operator"]}})
    return {
        "type": "object",
        "description": "A task: 'type' picks its fields (extract, publish, quality, dbt, ...); a task with "
        "'operator: <import path>' and no type runs any Airflow operator",
        "properties": {"type": {"enum": sorted(refs), "description": "The task type; see each type's fields"}},
        "allOf": branches,
        "discriminator": {"propertyName": "type", "mapping": refs},
    }


def _mappable(task: dict[str, Any]) -> None:
    """A mapped task (``expand``/``expand_kwargs``) gets its mapped parameters at run time: its type's
    required parameters are required only when it is not mapped (the factory checks each instance)."""
    required = [r for r in task.get("required", []) if r != "type"]
    if not required or "expand" not in task.get("properties", {}):
        return
    task["required"] = [r for r in task["required"] if r == "type"]
    if not task["required"]:
        del task["required"]
    task["anyOf"] = [{"required": required}, {"required": ["expand"]}, {"required": ["expand_kwargs"]}]


def pipeline_schema() -> dict[str, Any]:
    """The pipeline schema (one YAML file = one DAG)."""
    models = [Pipeline] + [task_model(name) for name in TASK_TYPES]
    refs, schema = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    root = dict(defs.pop("Pipeline"))
    task_refs = {name: refs[(task_model(name), "validation")]["$ref"] for name in TASK_TYPES}
    for ref in task_refs.values():
        _mappable(defs[ref.rsplit("/", 1)[1]])
    defs["Task"] = _task_schema(task_refs)
    tasks = root["properties"]["tasks"]
    (pattern,) = tasks["patternProperties"]
    tasks["patternProperties"] = {pattern: {"$ref": "#/$defs/Task"}}
    tasks["additionalProperties"] = False
    return {"$schema": DRAFT, "$id": SCHEMA_ID.format(name="pipeline"), "$comment": f"airflow-provider-dataeng "
            f"{__version__}", **root, "$defs": defs}


def defaults_schema() -> dict[str, Any]:
    """The ``defaults.yaml`` schema (settings inherited down the config folder tree)."""
    schema = Defaults.model_json_schema(ref_template="#/$defs/{model}")
    return {"$schema": DRAFT, "$id": SCHEMA_ID.format(name="defaults"),
            "$comment": f"airflow-provider-dataeng {__version__}", **schema}


def schema_text(kind: str = "pipeline") -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown schema {kind!r}; expected one of {', '.join(KINDS)}")
    data = pipeline_schema() if kind == "pipeline" else defaults_schema()
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write ``pipeline.schema.json`` and ``defaults.schema.json`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for kind in KINDS:
        path = directory / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        out.append(path)
    return out


def shipped(kind: str = "pipeline") -> dict[str, Any]:
    """The schema as shipped in the installed package."""
    from importlib.resources import files

    return json.loads((files("airflow_provider_dataeng") / "schema" / f"{kind}.schema.json").read_text("utf-8"))


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written)
