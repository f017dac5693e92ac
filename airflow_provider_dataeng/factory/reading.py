"""Read one config file defensively: bounded bytes, strict UTF-8, YAML under node/depth/alias caps and a budget.

Whatever a file holds (another encoding, an alias "bomb", megabytes, deep nesting) or is (a FIFO, a device,
a symlink loop, unreadable, gone mid-scan), reading it either returns its data or raises
:class:`~airflow_provider_dataeng.factory.errors.ConfigError` naming the file and the line, in bounded time.
A file that disappeared between listing and reading raises :class:`FileVanished` (it is skipped, as if the
scan had started a moment later).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from airflow_provider_dataeng import settings
from airflow_provider_dataeng.factory.errors import ConfigError, ConfigIssue

try:  # libyaml's event parser; the composer below is Python so it can count while it builds
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser as _EventParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _EventParser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _EventParser.__init__(self)


class FileVanished(Exception):
    """The file was listed but no longer exists (deleted or renamed mid-scan, e.g. by git-sync)."""


@dataclass(frozen=True)
class Limits:
    """Caps on one config file (``[dataeng]`` options)."""

    max_bytes: int = 1024 * 1024
    max_nodes: int = 20_000
    max_depth: int = 64
    budget_s: float = 2.0

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(max_bytes=settings.get("max_config_bytes"), max_nodes=settings.get("max_config_nodes"),
                   max_depth=settings.get("max_config_depth"), budget_s=settings.get("config_file_budget"))


class Budget:
    """CPU time (this thread's) spent on one file, checked between stages and while composing."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path, self.seconds = path, seconds
        self.start = time.thread_time()

    def check(self, stage: str) -> None:
        spent = time.thread_time() - self.start
        if spent > self.seconds:
            raise ConfigError([ConfigIssue(
                file=str(self.path), path=(), line=1,
                message=f"{stage} took {spent:.1f} s of CPU, over the {self.seconds:g} s budget per config file "
                "([dataeng] config_file_budget); split the pipeline or simplify the file")])


def _error(path: Path, message: str, line: int = 1) -> ConfigError:
    return ConfigError([ConfigIssue(file=str(path), path=(), line=line, message=message)])


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _open(path: Path) -> int:
    """A read-only descriptor; a name replaced mid-open (git-sync, editors) is retried once."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:  # replaced again in between
                raise FileVanished(str(path)) from None
            raise _error(path, f"broken symbolic link (points to {target!r}, which does not exist)") from None
        raise FileVanished(str(path)) from None


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes (at most ``max_bytes``); never blocks on FIFOs or devices."""
    try:
        fd = _open(path)
    except PermissionError as exc:
        raise _error(path, f"cannot read the file: permission denied ({exc.strerror}); the DAG processor "
                     "runs as a user who must be able to read it") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _error(path, "symbolic link loop: the link resolves to itself") from None
        raise _error(path, f"cannot open the file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise _error(path, f"not a regular file ({kind}); a pipeline config must be a YAML file")
        if info.st_size > max_bytes:
            raise _too_big(path, info.st_size, max_bytes)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # grew while we read it
            raise _too_big(path, size, max_bytes)
        return b"".join(chunks)
    except OSError as exc:
        raise _error(path, f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _too_big(path: Path, size: int, max_bytes: int) -> ConfigError:
    return _error(path, f"the file is {size:,} bytes, over the {max_bytes:,}-byte limit for a pipeline config "
                  "([dataeng] max_config_bytes)")


_UTF16_32 = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
             (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(path: Path, data: bytes) -> str:
    """Strict UTF-8 (a UTF-8 byte order mark is accepted); anything else names the line and the byte."""
    for bom, name in _UTF16_32:
        if data.startswith(bom):
            raise _error(path, f"the file is {name}-encoded; save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(path, f"not valid UTF-8: byte 0x{data[exc.start]:02X} at line {line}, column {column} "
                     "(a Latin-1 or Windows-1252 file?); save the file as UTF-8", line=line) from None


class LimitExceeded(yaml.YAMLError):
    """The document is over a cap; ``mark`` locates where."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


class _BoundedLoader(_Parser, SafeConstructor, Resolver):
    """libyaml events, composed in Python while counting nodes (aliases count as their full expansion) and
    depth, with the budget checked as it goes; safe construction; duplicate mapping keys are errors."""

    def __init__(self, text: str, limits: Limits, budget: Budget | None) -> None:
        _Parser.__init__(self, text)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.anchors: dict[str, yaml.Node] = {}
        self.limits, self.budget = limits, budget
        self.nodes = 0
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(anchored node) -> expanded size

    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node
    check_node = Composer.check_node
    get_node = Composer.get_node

    def _count(self, n: int, mark: Any) -> None:
        before = self.nodes
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            raise LimitExceeded(
                f"more than {self.limits.max_nodes:,} YAML nodes (counting each alias as the nodes it repeats; "
                "[dataeng] max_config_nodes): an anchor/alias expansion or an oversized file", mark)
        if self.budget is not None and before // 2000 != self.nodes // 2000:
            self.budget.check("parsing the YAML")

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            if anchor in self.anchors and id(self.anchors[anchor]) not in self.sizes:
                raise LimitExceeded(f"recursive alias *{anchor}: the anchored node contains itself", event.start_mark)
            if anchor in self.anchors:
                self._count(self.sizes[id(self.anchors[anchor])], event.start_mark)
            return Composer.compose_node(self, parent, index)  # raises on an undefined alias
        event = self.peek_event()
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise LimitExceeded(f"nested deeper than {self.limits.max_depth} levels ([dataeng] max_config_depth)",
                                event.start_mark)
        start = self.nodes
        self._count(1, event.start_mark)
        node = Composer.compose_node(self, parent, index)
        self.depth -= 1
        if getattr(event, "anchor", None):
            self.sizes[id(node)] = self.nodes - start
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                break
            if first is not None:
                raise ConstructorError(
                    f"duplicate key {key!r}", first.start_mark,
                    f"duplicate key {key!r} (first defined on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _BoundedLoader.construct_mapping)


def parse_yaml(path: Path, text: str, limits: Limits, budget: Budget | None = None) -> tuple[Any, yaml.Node | None]:
    """``(data, root node)`` of one YAML document; syntax errors, duplicate keys and caps raise ConfigError."""
    loader = _BoundedLoader(text, limits, budget)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except LimitExceeded as exc:
        raise _error(path, f"refused: {exc.message}", line=exc.mark.line + 1 if exc.mark else 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _error(path, f"invalid YAML: {exc.problem or exc}", line=(mark.line + 1) if mark else 1) from None
    except yaml.YAMLError as exc:
        raise _error(path, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _error(path, "refused: nested too deeply to parse") from None
    finally:
        loader.dispose()
    return data, root


def load_file(path: Path, limits: Limits | None = None, budget: Budget | None = None) -> tuple[str, Any, Any]:
    """``(text, data, root node)`` of one config file, under ``limits`` (default: the ``[dataeng]`` options)."""
    limits = limits or Limits.from_settings()
    text = decode(path, read_bytes(path, limits.max_bytes))
    if budget is not None:
        budget.check("reading the file")
    data, root = parse_yaml(path, text, limits, budget)
    return text, data, root


def read_bytes_prefix(path: Path, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of a regular file, b'' when it cannot be read (never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, max_bytes)
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_text_prefix(path: Path, max_bytes: int) -> str:
    """Up to ``max_bytes`` of a file as text (undecodable bytes replaced), '' when it cannot be read."""
    return read_bytes_prefix(path, max_bytes).decode("utf-8", errors="replace")
