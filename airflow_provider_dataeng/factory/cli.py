"""``dataeng validate PATH...`` and ``dataeng render FILE`` (also ``airflow dataeng ...`` on Airflow 3.2+).

Kept cheap to import: Airflow's CLI imports this module (the provider's ``cli`` entry) for every command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

HELP_VALIDATE = "Validate pipeline configs (files or directories); print FILE:LINE: field.path: message"
HELP_RENDER = "Print the task graph of one pipeline config, with types, resources and schedule"
HELP_SCHEMA = "Print the JSON Schema of pipeline configs (or defaults.yaml), as shipped in the package"


def given_root(path: Path) -> Path:
    """The config root of a path given on the command line, spelled relative to it as it was given (so
    messages name files as the user wrote them)."""
    from airflow_provider_dataeng.factory.tree import find_root

    start = path if path.is_dir() else path.parent
    resolved = find_root(path)
    up = len(start.resolve().relative_to(resolved).parts) if resolved in start.resolve().parents else 0
    return Path(os.path.normpath(os.path.join(start, *([".."] * up)))) if up else start


def _issues_for_paths(paths: Sequence[str], build: bool) -> tuple[list[Any], int]:
    """All issues of the given files/directories, and how many pipelines were checked."""
    from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue
    from airflow_provider_dataeng.factory.folder import build_loaded, duplicate_error, load_directory, winners
    from airflow_provider_dataeng.factory.loader import DEFAULTS_NAMES
    from airflow_provider_dataeng.factory.reading import Limits
    from airflow_provider_dataeng.factory.tree import scan

    issues: list[ConfigIssue] = []
    loaded: dict[Path, Any] = {}
    checked = 0
    limits = Limits.from_settings()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            issues.append(ConfigIssue(file=raw, path=(), line=1, message="no such file or directory"))
            continue
        root = given_root(path)
        try:
            tree = scan(root)
        except OSError as exc:
            issues.append(ConfigIssue(file=raw, path=(), line=1, message=f"cannot read the folder: {exc}"))
            continue
        for folder, reason in tree.skipped:
            if reason.startswith("cannot"):
                issues.append(ConfigIssue(file=str(folder), path=(), line=1, message=reason))
        if path.is_dir():
            good, bad = load_directory(root, limits=limits, tree=tree, under=Path(os.path.normpath(path)))
        else:
            if path.name in DEFAULTS_NAMES:  # a defaults file alone: it and the ones above it
                tree.pipelines = []
            else:
                tree.pipelines = [Path(os.path.normpath(path))]
            good, bad = load_directory(root, limits=limits, tree=tree, under=root)
            if path.name in DEFAULTS_NAMES:
                from airflow_provider_dataeng.factory.folder import DefaultsCache

                chain = DefaultsCache(tree, limits).chain(path.parent)
                if isinstance(chain, ConfigError):
                    issues.extend(chain.issues)
                continue
        loaded.update(good)
        checked += len(good) + len(bad)
        for err in bad.values():
            issues.extend(err.issues)
    # dag ids must be unique across everything validated together
    for loser, winner in winners({p: lp.dag_id for p, lp in loaded.items()}).items():
        issues.extend(duplicate_error(loaded.pop(loser), winner).issues)
    if build:
        _, errors = build_loaded(loaded, limits, {})
        for exc in errors.values():
            issues.extend(exc.issues)
    return issues, checked


def validate(paths: Sequence[str], *, build: bool = True, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """Print every problem as ``FILE:LINE: field.path: message``; return 1 if any, else 0."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        issues, checked = _issues_for_paths(paths, build)
    except Exception as exc:  # never a traceback for a config problem we failed to classify
        print(f"{paths[0] if paths else '.'}:1: <root>: cannot validate: {type(exc).__name__}: {exc}", file=out)
        return 1
    for issue in issues:
        print(issue.format(), file=out)
    files = len({i.file for i in issues})
    if issues:
        print(f"{len(issues)} error(s) in {files} file(s); {checked} pipeline file(s) checked", file=err)
        return 1
    print(f"OK: {checked} pipeline file(s) valid", file=err)
    return 0


def _task_line(task: Any, type_name: str, upstream: list[str]) -> str:
    from airflow_provider_dataeng.factory.kubernetes import BASE_CONTAINER

    pod = (task.executor_config or {}).get("pod_override")
    res = ""
    if pod is not None:
        for c in pod.spec.containers:
            if c.name == BASE_CONTAINER and c.resources is not None:
                req, lim = c.resources.requests or {}, c.resources.limits or {}
                res = " ".join(f"{k}={v}" + ("" if lim.get(k) == v else f"(limit {lim.get(k)})")
                               for k, v in req.items())
                res += " qos=" + ("Guaranteed" if req == lim else "Burstable")
                if c.image:
                    res += f" image={c.image}"
    cls = getattr(task, "operator_class", None) if type(task).__name__ == "MappedOperator" else None
    cls_name = f"{cls.__name__}, mapped" if isinstance(cls, type) else type(task).__name__
    line = f"  {task.task_id}  [{type_name}: {cls_name}]  retries={task.retries}"
    if res:
        line += f"  {res}"
    if upstream:
        line += f"\n      <- {', '.join(sorted(upstream))}"
    return line


def render(path_text: str, *, out: TextIO | None = None) -> int:
    """Print the DAG built from one config (schedule, each task with type, resources, upstream), then its
    effective config: every value with where it came from (FILE:LINE of the file or of a defaults.yaml,
    the pipeline-wide setting, or "default")."""
    out = out or sys.stdout
    from airflow_provider_dataeng.factory.effective import effective_config
    from airflow_provider_dataeng.factory.errors import ConfigError
    from airflow_provider_dataeng.factory.folder import (
        DefaultsCache,
        _inherited_error,
        build_loaded,
        load_directory,
    )
    from airflow_provider_dataeng.factory.graph import airflow_task_id, topological
    from airflow_provider_dataeng.factory.loader import load_pipeline
    from airflow_provider_dataeng.factory.reading import Limits
    from airflow_provider_dataeng.factory.schedule import describe_schedule
    from airflow_provider_dataeng.factory.tree import scan

    path = Path(path_text)
    if not path.is_file():
        print(f"{path_text}:1: <root>: no such file", file=out)
        return 1
    try:
        limits = Limits.from_settings()
        root = given_root(path)
        tree = scan(root)
        path = Path(os.path.normpath(path))
        chain = DefaultsCache(tree, limits).chain(path.parent)
        if isinstance(chain, ConfigError):
            raise _inherited_error(path, chain, tree, limits)
        lp = load_pipeline(path, chain, limits)
        # with the pipelines it is scheduled after (schedule: {after: [...]}), as the DAG file does
        loaded, _ = load_directory(root, lp.dag_id, limits, tree=tree)
        loaded = {f: other for f, other in loaded.items() if other.dag_id != lp.dag_id}
        loaded[path] = lp
        built, errors = build_loaded(loaded, limits, {})
        if path in errors:
            raise errors[path]
        dag = built[path]
    except ConfigError as exc:
        print(exc.format(), file=out)
        return 1
    except Exception as exc:
        print(f"{path_text}:1: <root>: cannot render: {type(exc).__name__}: {exc}", file=out)
        return 1
    p = lp.pipeline
    print(f"DAG {dag.dag_id}  ({path})", file=out)
    if p.description:
        print(f"  {p.description}", file=out)
    print(f"  schedule: {describe_schedule(p.schedule)}  start: {p.start_date}  end: {p.end_date}  "
          f"catchup: {bool(p.catchup)}  max_active_runs: {p.max_active_runs or 'default'}", file=out)
    print(f"  owner: {p.owner or 'airflow'}  tags: {', '.join(p.tags or []) or '-'}  retries: {p.retries or 0}"
          f"  retry_delay: {p.retry_delay or 'default'}  backoff: {p.retry_exponential_backoff or False}"
          f"  max_retry_delay: {p.max_retry_delay or '-'}", file=out)
    by_task_id = {airflow_task_id(p, n, t.group): lp.task_types[n] for n, t in lp.tasks.items()}
    print(f"tasks ({len(dag.tasks)}):", file=out)
    edges = {t.task_id: set(t.downstream_task_ids) for t in sorted(dag.tasks, key=lambda t: t.task_id)}
    for task in (dag.get_task(task_id) for task_id in topological(edges)):
        type_name = by_task_id.get(task.task_id) or _dbt_type(task.task_id, lp)
        print(_task_line(task, type_name, list(task.upstream_task_ids)), file=out)
    print('effective config (each value <- where it came from: FILE:LINE, "(pipeline-wide)" for a task '
          'setting inherited from the pipeline, "default" for the default):', file=out)
    for line in effective_config(lp):
        print(f"  {line}", file=out)
    return 0


def _dbt_type(task_id: str, lp: Any) -> str:
    return "dbt" if any(t == "dbt" for t in lp.task_types.values()) else "?"


def build_parser(prog: str = "dataeng") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="airflow-provider-dataeng pipeline configs")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help=HELP_VALIDATE, description=HELP_VALIDATE)
    v.add_argument("paths", nargs="+", metavar="PATH", help="config files or directories")
    v.add_argument("--no-build", action="store_true", help="check the configs only (do not build the DAGs)")
    r = sub.add_parser("render", help=HELP_RENDER, description=HELP_RENDER)
    r.add_argument("file", metavar="FILE")
    s = sub.add_parser("schema", help=HELP_SCHEMA, description=HELP_SCHEMA)
    _schema_args(s.add_argument)
    return parser


def _schema_args(add: Any) -> None:
    add("--kind", choices=("pipeline", "defaults"), default="pipeline",
        help="pipeline files or defaults.yaml (default: pipeline)")
    add("--output", "-o", help="write to this file instead of stdout")
    add("--output-dir", help="write pipeline.schema.json and defaults.schema.json into this directory")


def schema(kind: str = "pipeline", output: str | None = None, output_dir: str | None = None) -> int:
    """Print (or write) the JSON Schema shipped with the installed package."""
    from airflow_provider_dataeng.factory.schema import KINDS, schema_text

    if output_dir:
        for name in KINDS:
            target = Path(output_dir) / f"{name}.schema.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(schema_text(name), encoding="utf-8")
            print(target)
        return 0
    text = schema_text(kind)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _quiet_logging() -> None:
    """Results go to stdout; the provider's diagnostics to stderr; Airflow's INFO chatter nowhere."""
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    logger = logging.getLogger("airflow_provider_dataeng")
    if not any(getattr(h, "_dataeng_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._dataeng_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dataeng`` console script."""
    args = build_parser().parse_args(argv)
    _quiet_logging()
    if args.command == "validate":
        return validate(args.paths, build=not args.no_build)
    if args.command == "render":
        return render(args.file)
    return schema(args.kind, args.output, args.output_dir)


# --- Airflow CLI (provider "cli" entry) ---------------------------------------------------------------------
def validate_command(args: argparse.Namespace) -> None:
    """``airflow dataeng validate``."""
    sys.exit(validate(args.paths, build=not args.no_build))


def render_command(args: argparse.Namespace) -> None:
    """``airflow dataeng render``."""
    sys.exit(render(args.file))


def schema_command(args: argparse.Namespace) -> None:
    """``airflow dataeng schema``."""
    sys.exit(schema(args.kind, args.output, args.output_dir))


def get_provider_cli_commands() -> list[Any]:
    """``airflow dataeng validate|render|schema`` (Airflow 3.2+; the ``dataeng`` script works everywhere)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    paths = Arg(("paths",), nargs="+", metavar="PATH", help="config files or directories")
    no_build = Arg(("--no-build",), action="store_true", help="check the configs only (do not build the DAGs)")
    file_arg = Arg(("file",), metavar="FILE", help="a pipeline config file")
    schema_args: list[Any] = []
    _schema_args(lambda *flags, **kw: schema_args.append(Arg(flags, **kw)))
    return [
        GroupCommand(
            name="dataeng",
            help="airflow-provider-dataeng: validate and render YAML pipeline configs",
            subcommands=(
                ActionCommand(name="validate", help=HELP_VALIDATE,
                              func=lazy_load_command(f"{__name__}.validate_command"), args=(paths, no_build)),
                ActionCommand(name="render", help=HELP_RENDER,
                              func=lazy_load_command(f"{__name__}.render_command"), args=(file_arg,)),
                ActionCommand(name="schema", help=HELP_SCHEMA,
                              func=lazy_load_command(f"{__name__}.schema_command"), args=tuple(schema_args)),
            ),
        )
    ]


if __name__ == "__main__":
    sys.exit(main())
