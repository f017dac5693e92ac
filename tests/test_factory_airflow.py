"""The factory under the real Airflow components: config subfolders with their defaults, a mapped task over an
upstream's result run by the scheduler, and task processes that parse only their own DAG."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow

OPS = '''
"""Test operators for {tag}; importing this module records (pid, parsing context)."""
import json, os
from airflow.sdk import BaseOperator

with open({record!r}, "a") as f:
    f.write(json.dumps([__name__, os.getpid(), os.environ.get("_AIRFLOW_PARSING_CONTEXT_DAG_ID")]) + "\\n")


class ListOperator(BaseOperator):
    def __init__(self, *, values, **kwargs):
        super().__init__(**kwargs)
        self.values = values

    def execute(self, context):
        return self.values
'''


def test_subfolder_pipeline_maps_over_an_upstream_result_and_tasks_parse_only_their_dag(airflow_stack: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    dag_id, other_id = f"fx_mapped_{tag}", f"fx_other_{tag}"
    home = Path(airflow_stack.home)
    configs = home / "factory_tree" / tag
    record = home / "factory_tree" / f"{tag}.imports"
    out = home / "factory_tree" / f"{tag}.out"
    out.mkdir(parents=True)
    # two operator modules in the DAGs folder (on the components' sys.path): one per pipeline
    airflow_stack.add_dag_file(f"fx_ops_{tag}.py", OPS.format(tag=tag, record=str(record)))
    airflow_stack.add_dag_file(f"fx_trip_{tag}.py", OPS.format(tag=tag, record=str(record)))
    files = {
        "defaults.yaml": "owner: root-team\nstart_date: 2024-01-01\nretries: 0\n",
        "team/defaults.yaml": "owner: team\nmax_active_runs: 1\n",
        f"team/mapped/{dag_id}.yaml": f"""\
            schedule: null
            tasks:
              list_files:
                operator: fx_ops_{tag}.ListOperator
                kwargs: {{values: ["echo one > {out}/one", "echo two > {out}/two", "echo three > {out}/three"]}}
              write:
                operator: airflow.providers.standard.operators.bash.BashOperator
                expand: {{bash_command: {{xcom: list_files}}}}
        """,
        f"other/{other_id}.yaml": f"""\
            schedule: null
            tasks:
              trip: {{operator: fx_trip_{tag}.ListOperator, kwargs: {{values: []}}}}
        """,
    }
    for name, text in files.items():
        path = configs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    airflow_stack.add_dag_file(f"fx_tree_{tag}.py", f'''
from airflow_provider_dataeng.factory.folder import build_dags
from airflow.providers.common.compat.sdk import get_parsing_context

_result = build_dags({str(configs)!r}, only_dag_id=get_parsing_context().dag_id)
globals().update({{f"dag__{{k}}": v for k, v in _result.dags.items()}})
''')
    details = airflow_stack.wait_dag(dag_id, timeout=120)
    airflow_stack.wait_dag(other_id, timeout=60)
    assert details.get("owners") == ["team"]  # team/defaults.yaml over the root's

    run_id = airflow_stack.trigger(dag_id)
    assert airflow_stack.wait_run(dag_id, run_id, timeout=240) == "success", airflow_stack.task_states(dag_id, run_id)
    states = airflow_stack.task_states(dag_id, run_id)
    assert states == {"list_files": "success", "write[0]": "success", "write[1]": "success", "write[2]": "success"}
    assert sorted(p.name for p in out.iterdir()) == ["one", "three", "two"]

    # Task processes parse the DAG file under a parsing context naming their DAG: they import the operator
    # module of their own pipeline, never the other pipeline's.
    imports = [json.loads(line) for line in record.read_text().splitlines()]
    in_tasks = [(module, ctx) for module, _pid, ctx in imports if ctx]
    assert (f"fx_ops_{tag}", dag_id) in in_tasks, imports
    assert all(module != f"fx_trip_{tag}" for module, ctx in in_tasks), imports
