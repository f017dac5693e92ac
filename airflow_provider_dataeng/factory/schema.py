"""JSON Schema of pipeline configs (``schema/pipeline.schema.json``) and of ``defaults.yaml``.

Regenerate: ``python -m airflow_provider_dataeng.factory.schema`` (a test checks the committed files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from airflow_provider_dataeng.factory.pipeline import Defaults, Pipeline
from airflow_provider_dataeng.factory.task_types import TASK_TYPES, task_model

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
SCHEMA_ID = "https://github.com/airflow-provider-dataeng/schema/{name}.schema.json"


def pipeline_schema() -> dict[str, Any]:
    """The pipeline schema: tasks are any of the task-type models (chosen by ``type`` / ``operator``)."""
    models = [Pipeline] + [task_model(name) for name in TASK_TYPES]
    refs, schema = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    root = dict(defs.pop("Pipeline"))
    task_refs = [refs[(task_model(name), "validation")] for name in TASK_TYPES]
    tasks = root["properties"]["tasks"]
    (pattern,) = tasks["patternProperties"]
    tasks["patternProperties"] = {pattern: {"anyOf": task_refs}}
    tasks["additionalProperties"] = False
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(name="pipeline"),
        **root,
        "$defs": defs,
    }


def defaults_schema() -> dict[str, Any]:
    schema = Defaults.model_json_schema(ref_template="#/$defs/{model}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID.format(name="defaults"),
            **schema}


def schema_text(kind: str = "pipeline") -> str:
    data = pipeline_schema() if kind == "pipeline" else defaults_schema()
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write ``pipeline.schema.json`` and ``defaults.schema.json``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for kind in ("pipeline", "defaults"):
        path = directory / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written)
