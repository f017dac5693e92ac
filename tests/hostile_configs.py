"""A generated corpus of hostile pipeline config files (tests and ``benchmarks/parse.py``).

``write_hostile(configs_dir)`` writes every case and returns ``{file name: expected error text}``; an
expected text of ``None`` means the file must be skipped without a DAG (not a config file, or gone).
"""

from __future__ import annotations

import os
from pathlib import Path

EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"
VALID = f'schedule: "@daily"\ntasks:\n  a:\n    operator: {EMPTY}\n'


def _bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs': each anchor repeats the previous one ``width`` times (~400 bytes, 9^9 nodes)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\ntasks: {{a: {{operator: {EMPTY}, kwargs: {{x: *a{levels - 1}}}}}}}\n"


def _deep_block(depth: int) -> str:
    lines = ["tasks:", "  a:", f"    operator: {EMPTY}", "    kwargs:"]
    lines += [" " * (6 + 2 * i) + f"k{i}:" for i in range(depth)]
    return "\n".join(lines) + " x\n"


def write_hostile(configs: Path, *, huge_bytes: int = 3 * 1024 * 1024) -> dict[str, str | None]:
    """Write the hostile corpus into ``configs``; ``{file name: expected message (None: no DAG)}``."""
    configs.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        # encodings
        "latin1.yaml": ("description: Café orders\n" + VALID).encode("latin-1"),
        "utf16.yaml": VALID.encode("utf-16"),
        "binary.yaml": bytes(range(256)) * 64,
        "nul_bytes.yaml": (VALID + "description: a\x00b\n").encode(),
        # bombs and caps
        "alias_bomb.yaml": _bomb().encode(),
        "recursive_alias.yaml": f"tasks: &t {{a: {{operator: {EMPTY}, kwargs: {{self: *t}}}}}}\n".encode(),
        "many_nodes.yaml": ("tasks: {a: {operator: " + EMPTY + ", kwargs: {x: [" + ",".join(["1"] * 40_000)
                            + "]}}}\n").encode(),
        "huge.yaml": (VALID + "# " + "x" * huge_bytes + "\n").encode(),
        "deep_flow.yaml": ("tasks: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        "deep_block.yaml": _deep_block(200).encode(),
        # YAML that is not a pipeline, or not safe
        "python_tag.yaml": b"!!python/object/apply:os.system ['echo pwned']\n",
        "not_a_mapping.yaml": b"- a\n- b\n",
        "empty.yaml": b"",
        "duplicate_keys.yaml": (VALID + "schedule: '@hourly'\n").encode(),
        "bidi_dag_id.yaml": ("dag_id: \"orders\u202egnp.exe\"\n" + VALID).encode(),
    }
    expected: dict[str, str | None] = {
        "latin1.yaml": "not valid UTF-8: byte 0xE9 at line 1, column 17",
        "utf16.yaml": "UTF-16-encoded; save it as UTF-8",
        "binary.yaml": "not valid UTF-8",
        "nul_bytes.yaml": "invalid YAML",
        "alias_bomb.yaml": "more than 20,000 YAML nodes",
        "recursive_alias.yaml": "recursive alias *t",
        "many_nodes.yaml": "more than 20,000 YAML nodes",
        "huge.yaml": "over the 1,048,576-byte limit",
        "deep_flow.yaml": "nesting depth",
        "deep_block.yaml": "nested deeper than 64 levels",
        "python_tag.yaml": "invalid YAML",
        "not_a_mapping.yaml": "a pipeline file must be a mapping",
        "empty.yaml": "a pipeline file must be a mapping",
        "duplicate_keys.yaml": "duplicate key 'schedule'",
        "bidi_dag_id.yaml": "dag_id",
    }
    for name, data in files.items():
        (configs / name).write_bytes(data)
    # things that are not regular files
    os.mkfifo(configs / "fifo.yaml")
    expected["fifo.yaml"] = "not a regular file (a FIFO (named pipe))"
    os.symlink("/dev/zero", configs / "device.yaml")
    expected["device.yaml"] = "not a regular file (a character device)"
    os.symlink("loop.yaml", configs / "loop.yaml")
    expected["loop.yaml"] = "symbolic link loop"
    os.symlink("no_such_target.yaml", configs / "dangling.yaml")
    expected["dangling.yaml"] = "broken symbolic link"
    return expected
