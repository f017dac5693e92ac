"""The config tree: pipeline files and ``defaults.yaml`` files of a config folder and its subfolders.

Listing only (no file is read here): hidden folders and files (``.x``) and ``_x`` names are skipped,
symbolic links to folders are followed once (a link back to a folder already scanned, i.e. a loop, is
skipped with a warning), and a folder that cannot be listed is reported, never fatal.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULTS_NAMES = ("defaults.yaml", "defaults.yml")
CONFIG_SUFFIXES = (".yaml", ".yml")
MAX_DEPTH = 32

log = logging.getLogger(__name__)


@dataclass
class ConfigTree:
    """Pipeline files (each folder's by name, then its subfolders') and each folder's defaults file."""

    root: Path
    pipelines: list[Path] = field(default_factory=list)
    defaults: dict[Path, Path] = field(default_factory=dict)  # folder -> its defaults.yaml
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # folders not scanned, and why
    only_stem: str | None = None  # a partial tree: only the pipelines of that file name were kept

    def relative(self, path: Path) -> str:
        """``path`` relative to the root (posix), or as given when it is outside."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def folders(self, directory: Path) -> list[Path]:
        """The folders from the root down to ``directory`` (both included; only ``directory`` when outside)."""
        try:
            parts = directory.relative_to(self.root).parts
        except ValueError:
            return [directory]
        out = [self.root]
        for part in parts:
            out.append(out[-1] / part)
        return out

    def defaults_files(self, directory: Path) -> list[Path]:
        """The defaults files that apply to pipelines in ``directory``, root first (nearest last)."""
        return [self.defaults[d] for d in self.folders(directory) if d in self.defaults]

    def under(self, directory: Path) -> list[Path]:
        """The pipeline files in ``directory`` or below it."""
        return [p for p in self.pipelines if p.parent == directory or directory in p.parents]


def _skip_name(name: str) -> bool:
    return name.startswith((".", "_"))


def scan(root: Path, only_stem: str | None = None) -> ConfigTree:
    """List the config tree under ``root``; raises ``OSError`` only when ``root`` itself cannot be listed.

    ``only_stem``: keep only the pipeline files of that name (``<only_stem>.yaml`` in any folder) and the
    defaults files; the other names are compared as strings and dropped (a task pod's parse allocates
    nothing per file, so it does not grow with the number of files)."""
    tree = ConfigTree(root=root, only_stem=only_stem)
    seen: dict[tuple[int, int], Path] = {}
    info = os.stat(root)
    seen[(info.st_dev, info.st_ino)] = root
    _scan_dir(tree, root, seen, 0, top=True)  # files of a folder (by name), then its subfolders (by name)
    return tree


def _scan_dir(tree: ConfigTree, directory: Path, seen: dict[tuple[int, int], Path], depth: int,
              top: bool = False) -> None:
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        if top:
            raise
        _skip(tree, directory, f"cannot list the folder: {exc.strerror or exc}")
        return
    subdirs: list[Path] = []
    for entry in entries:
        name = entry.name
        if _skip_name(name):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:  # a symlink loop or a vanished entry: reading it says what is wrong
            is_dir = False
        if is_dir:
            subdirs.append(directory / name)
            continue
        stem, suffix = os.path.splitext(name)
        if suffix not in CONFIG_SUFFIXES:
            continue
        if name in DEFAULTS_NAMES:
            tree.defaults.setdefault(directory, directory / name)
        elif tree.only_stem is None or stem == tree.only_stem:
            # anything so named (a FIFO, a broken link...): reading it reports the problem
            tree.pipelines.append(directory / name)
    for sub in subdirs:
        if depth + 1 > MAX_DEPTH:
            _skip(tree, sub, f"nested more than {MAX_DEPTH} folders deep")
            continue
        try:
            info = os.stat(sub)
        except OSError as exc:
            _skip(tree, sub, f"cannot read the folder: {exc.strerror or exc}")
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            _skip(tree, sub, f"symbolic link to {tree.relative(seen[key])}, a folder already scanned "
                  "(a link loop or a second link to one folder); skipped")
            continue
        seen[key] = sub
        _scan_dir(tree, sub, seen, depth + 1)


def _skip(tree: ConfigTree, path: Path, reason: str) -> None:
    tree.skipped.append((path, reason))
    log.warning("Config folder %s: %s", path, reason)


def find_root(path: Path) -> Path:
    """The config root for a file or folder given on the command line: ``[dataeng] config_dir`` when it
    contains ``path``, else the highest ancestor reached through folders that hold YAML files (a config
    tree's folders do; the folder of the DAG file does not)."""
    path = path.resolve()
    start = path if path.is_dir() else path.parent
    try:
        from airflow_provider_dataeng import settings

        configured = settings.get("config_dir")
    except Exception:  # settings unreadable: fall back on the layout
        configured = None
    if configured:
        conf_dir = Path(configured).resolve()
        if start == conf_dir or conf_dir in start.parents:
            return conf_dir
    root = start
    while root.parent != root and _has_yaml(root.parent):
        root = root.parent
    return root


def _has_yaml(directory: Path) -> bool:
    try:
        with os.scandir(directory) as it:
            return any(e.name.endswith(CONFIG_SUFFIXES) and not _skip_name(e.name) for e in it)
    except OSError:
        return False
