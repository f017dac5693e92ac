"""One definition per task type (issue 12 item 1), checked for EVERY type the factory knows.

For each task type of ``factory/task_types.py``:

- its params model is its engine's spec (a ``TaskSpec`` in ``airflow_provider_dataeng.<engine>.spec``);
- the operator's keyword arguments are exactly the spec's fields, each defaulting to
  ``spec_default(<Spec>, "<field>")`` (never a literal; a required field may have no default), with the
  templated fields among them;
- the config's JSON Schema (``factory.schema.pipeline_schema``) shows the spec's own field schemas.

Task types still being converted by their owners are listed in NOT_CONVERTED: their cases are strict xfails,
so a type that becomes compliant fails the run until it is taken off the list.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest

from airflow_provider_dataeng.factory.schema import pipeline_schema
from airflow_provider_dataeng.factory.task_types import (
    RENDERED_OPERATORS,
    TASK_TYPES,
    import_path,
    task_model,
)
from airflow_provider_dataeng.specs import TaskSpec, spec_default

# type -> who converts it. Remove an entry when its spec lands (the strict xfail then fails as XPASS).
NOT_CONVERTED: dict[str, str] = {}
# Types with no spec of their own, and why.
NO_SPEC: dict[str, str] = {
    "operator": "any operator by import path: its kwargs are that operator's own parameters",
}


def _cases(*, needs_operator: bool) -> list[Any]:
    cases = []
    for name, tt in TASK_TYPES.items():
        if name in NO_SPEC:
            continue
        if name in NOT_CONVERTED:
            cases.append(pytest.param(name, marks=pytest.mark.xfail(
                strict=True, reason=f"task type {name!r} not converted to the spec pattern yet ({NOT_CONVERTED[name]})")))
        elif needs_operator and (tt.operator_path or RENDERED_OPERATORS.get(name)) is None:
            raise AssertionError(f"task type {name!r} has a spec but no operator to check it against")
        else:
            cases.append(name)
    return cases


def test_every_task_type_is_walked():
    """A new task type cannot escape: it has a spec and is checked below, or it is listed with a reason."""
    assert set(NOT_CONVERTED) <= set(TASK_TYPES) and set(NO_SPEC) <= set(TASK_TYPES)
    assert not set(NOT_CONVERTED) & set(NO_SPEC)
    converted = set(TASK_TYPES) - set(NOT_CONVERTED) - set(NO_SPEC)
    assert {"freshness", "gap_check", "failover_health", "failover_health_sensor"} <= converted


@pytest.mark.parametrize("type_name", _cases(needs_operator=False))
def test_params_model_is_the_engine_spec(type_name: str):
    spec = TASK_TYPES[type_name].params_model
    assert issubclass(spec, TaskSpec), f"{type_name}: params model {spec.__name__} is not a TaskSpec"
    package, _, module = spec.__module__.rpartition(".")
    assert module == "spec" and package.startswith("airflow_provider_dataeng.") and ".factory" not in package, (
        f"{type_name}: {spec.__qualname__} lives in {spec.__module__}; expected <engine package>/spec.py"
    )
    for name, field in spec.model_fields.items():
        assert field.description, f"{type_name}: {spec.__name__}.{name} has no description"


def _init_defaults(cls: type) -> dict[str, ast.expr | None]:
    """The keyword parameters of ``cls.__init__`` as written in its source: name -> default expression."""
    source = textwrap.dedent(inspect.getsource(cls.__init__))
    func = ast.parse(source).body[0]
    assert isinstance(func, ast.FunctionDef)
    args = func.args
    out: dict[str, ast.expr | None] = {}
    positional = args.posonlyargs + args.args
    for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True):
        out[arg.arg] = default
    for arg in positional[: len(positional) - len(args.defaults)]:
        out[arg.arg] = None
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out[arg.arg] = default
    out.pop("self", None)
    return out


@pytest.mark.parametrize("type_name", _cases(needs_operator=True))
def test_operator_signature_is_the_spec(type_name: str):
    """The operator's keyword arguments are its spec's fields, defaults written ``spec_default(Spec, name)``.

    The operator's spec is the one its ``spec_default`` calls name: the type's params model, or a base of it
    (a rendered type such as dbt: the config adds rendering fields to what each rendered operator takes)."""
    tt = TASK_TYPES[type_name]
    path = tt.operator_path or RENDERED_OPERATORS[type_name]
    cls = import_path(path)
    written = _init_defaults(cls)
    spec_names = {ast.unparse(node.args[0]) for node in written.values()
                  if isinstance(node, ast.Call) and ast.unparse(node.func) == "spec_default" and node.args}
    assert len(spec_names) <= 1, f"{cls.__name__}: defaults name specs {sorted(spec_names)}; expected one"
    # no spec_default at all: every field is required, and the spec is the type's params model
    spec = getattr(inspect.getmodule(cls), spec_names.pop()) if spec_names else tt.params_model
    assert issubclass(tt.params_model, spec), (
        f"{type_name}: the config's model {tt.params_model.__name__} is not (built on) {spec.__name__}"
    )
    params = {
        name: p for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    assert set(params) == set(spec.model_fields), (
        f"{cls.__name__} arguments vs {spec.__name__} fields: only in the operator "
        f"{sorted(set(params) - set(spec.model_fields))}, only in the spec {sorted(set(spec.model_fields) - set(params))}"
    )
    for name, param in params.items():
        assert param.kind is param.KEYWORD_ONLY, f"{cls.__name__}({name}): expected a keyword-only argument"
        if param.default is param.empty:  # a required field may stay a required argument
            assert spec.model_fields[name].is_required(), (
                f"{cls.__name__}({name}) has no default but {spec.__name__}.{name} is optional"
            )
            continue
        assert param.default == spec_default(spec, name), (
            f"{cls.__name__}({name}={param.default!r}) but {spec.__name__} default is {spec_default(spec, name)!r}"
        )
        node = written[name]
        assert isinstance(node, ast.Call) and ast.unparse(node.func) == "spec_default", (
            f"{cls.__name__}({name}=...): write the default as spec_default({spec.__name__}, {name!r}), "
            f"not {ast.unparse(node) if node is not None else 'nothing'}"
        )
        assert [ast.unparse(a) for a in node.args] == [spec.__name__, repr(name)], (
            f"{cls.__name__}({name}={ast.unparse(node)}): expected spec_default({spec.__name__}, {name!r})"
        )
    templated = set(getattr(cls, "template_fields", ()) or ())
    assert templated <= set(spec.model_fields), (
        f"{cls.__name__}.template_fields not in {spec.__name__}: {sorted(templated - set(spec.model_fields))}"
    )


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return pipeline_schema()


@pytest.mark.parametrize("type_name", _cases(needs_operator=False))
def test_json_schema_is_generated_from_the_spec(type_name: str, schema: dict[str, Any]):
    spec = TASK_TYPES[type_name].params_model
    assert issubclass(spec, TaskSpec), f"{type_name}: the schema comes from {spec.__name__}, which is not a spec"
    model = task_model(type_name)
    assert issubclass(model, spec), f"{model.__name__} is not built on {spec.__name__}"
    own = spec.model_json_schema(ref_template="#/$defs/{model}")
    task_schema = schema["$defs"][model.__name__]
    # fields a config cannot set (SkipJsonSchema, e.g. a Python callable) are in neither schema
    assert set(own["properties"]) <= set(task_schema["properties"])
    for name in own["properties"]:
        assert task_schema["properties"][name] == own["properties"][name], (
            f"{type_name}: the config schema of {name!r} differs from {spec.__name__}'s"
        )
    # a spec's required parameters: required in the config, unless the task is mapped (expand/expand_kwargs
    # give them at run time; factory/schema.py _mappable)
    required = set(task_schema.get("required", []))
    unless_mapped = [set(alt["required"]) for alt in task_schema.get("anyOf", [])]
    if unless_mapped:
        assert {"expand"} in unless_mapped and {"expand_kwargs"} in unless_mapped
        required |= next(r for r in unless_mapped if r not in ({"expand"}, {"expand_kwargs"}))
    assert set(own.get("required", [])) <= required
    for ref_name, definition in own.get("$defs", {}).items():
        assert schema["$defs"][ref_name] == definition
