"""Which files of the tests folder a pytest test module can run: its conftests, its packages'
``__init__.py`` and the local modules it imports, found by reading the code (``ast``), never by
running it.

The cache reruns a test when one of them changes, and only then: editing ``tests/helpers/db.py``
reruns the tests that import it, not the whole suite. Whatever cannot be read for sure makes a
module depend on every Python file of the tests folder, as before this analysis existed:

- an import that resolves nowhere (no local file, not the standard library, not installed:
  a ``sys.path`` trick may point it anywhere), unless it is guarded by ``except ImportError``;
- a dynamic import (``importlib.import_module(name)``, ``__import__``, ``runpy``, ``exec``,
  loading a file by path) whose target is not a string literal;
- a file that does not parse.

Modules outside the tests folder (the application, installed packages) are not followed: the
application's sources are the business of ``inputs``. Called by the pytest runner, once per run.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

# Calls that import something named by their first argument.
_IMPORT_CALLS = frozenset({"import_module", "__import__", "importorskip"})
# Calls that run code we cannot follow (a file by path, a string of code).
_OPAQUE_CALLS = frozenset(
    {"run_path", "run_module", "spec_from_file_location", "SourceFileLoader", "load_source", "exec"}
)
_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass
class _Imports:
    """What one file imports: (dotted name, level, guarded) and whether it is opaque."""

    names: list[tuple[str, int, bool]] = field(default_factory=list)
    opaque: bool = False


class _Reader(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found = _Imports()
        self._guarded = 0

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(handler) for handler in node.handlers)
        self._guarded += guarded
        for statement in node.body:
            self.visit(statement)
        self._guarded -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.names.append((alias.name, 0, self._guarded > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        for alias in node.names:
            # `from a import b`: b may be a submodule; `from . import b` certainly names one.
            if alias.name != "*":
                dotted = f"{base}.{alias.name}" if base else alias.name
                self.found.names.append((dotted, node.level, True))
        self.found.names.append((base, node.level, self._guarded > 0))

    def visit_Assign(self, node: ast.Assign) -> None:
        # pytest_plugins = ["tests.plugins.db"] in a conftest loads modules by name.
        if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets):
            values = (
                node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            )
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    self.found.names.append((value.value, 0, self._guarded > 0))
                else:
                    self.found.opaque = True
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in _IMPORT_CALLS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if first.value.startswith("."):
                    self.found.opaque = True  # relative to a `package=` argument
                else:
                    guarded = self._guarded > 0 or name == "importorskip"
                    self.found.names.append((first.value, 0, guarded))
            else:
                self.found.opaque = True
        elif name in _OPAQUE_CALLS:
            self.found.opaque = True
        self.generic_visit(node)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(_call_name(kind) in _GUARDS for kind in kinds)


# Files read before, by content: a long-lived process (``--watch``) parses only what changed.
_READ: dict[tuple[Path, str], _Imports] = {}
_READ_LIMIT = 20_000


def read_imports(path: Path) -> _Imports:
    """The imports of one Python file (opaque if it cannot be read or parsed)."""
    try:
        source = path.read_bytes()
    except OSError:
        return _Imports(opaque=True)
    key = (path, xxhash.xxh3_128_hexdigest(source))
    known = _READ.get(key)
    if known is not None:
        return known
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        found = _Imports(opaque=True)
    else:
        reader = _Reader()
        reader.visit(tree)
        found = reader.found
    if len(_READ) >= _READ_LIMIT:
        _READ.clear()
    _READ[key] = found
    return found


class ImportGraph:
    """The local import graph of a project's tests folder, built lazily, each file read once."""

    def __init__(self, root: Path, tests: Path) -> None:
        self.root = root
        self.tests = tests
        self._imports: dict[Path, _Imports] = {}
        self._resolved: dict[tuple[Path, str, int], list[Path] | None] = {}
        self._closures: dict[Path, frozenset[Path] | None] = {}
        self._installed: dict[str, bool] = {}
        self._every: list[Path] | None = None
        self._top_index: dict[str, list[Path]] | None = None
        self._dependencies: dict[tuple[Path, ...], list[Path]] = {}
        self._folder_files: dict[Path, list[Path]] = {}

    # --- what a test module depends on -------------------------------------------------------

    def dependencies(self, modules: Iterable[Path]) -> list[Path]:
        """The files of the tests folder (and the conftests above it) that the test modules
        ``modules`` can run, themselves excluded. Every Python file of the tests folder if
        any of them cannot be read for sure."""
        key = tuple(modules)
        known = self._dependencies.get(key)
        if known is None:
            known = self._dependencies[key] = self._find_dependencies(key)
        return known

    def _find_dependencies(self, modules: tuple[Path, ...]) -> list[Path]:
        found: set[Path] = set()
        for module in modules:
            for start in (module, *self._path_files(module)):
                closure = self._closure(start)
                if closure is None:
                    return sorted(set(self.every_python_file()) | self._path_files_of(modules))
                found |= closure
                found.add(start)
        return sorted(found - set(modules))

    def every_python_file(self) -> list[Path]:
        if self._every is None:
            self._every = sorted(p for p in _walk_python(self.tests))
        return self._every

    def _path_files_of(self, modules: Iterable[Path]) -> set[Path]:
        return {path for module in modules for path in self._path_files(module)}

    def _path_files(self, module: Path) -> list[Path]:
        """The conftest.py and __init__.py files pytest runs for ``module``: in its folder and
        every folder above it, up to the project root (a missing one still counts: creating it
        changes what runs)."""
        files = self._folder_files.get(module.parent)
        if files is None:
            files = []
            for folder in module.parents:
                if not folder.is_relative_to(self.root):
                    break
                files += [folder / "conftest.py", folder / "__init__.py"]
                if folder == self.root:
                    break
            self._folder_files[module.parent] = files
        return [path for path in files if path != module]

    def _closure(self, start: Path) -> frozenset[Path] | None:
        """Local files ``start`` imports, transitively (None: cannot tell)."""
        if start in self._closures:
            return self._closures[start]
        self._closures[start] = frozenset()  # an import cycle ends here
        seen: set[Path] = set()
        pending = [start]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            targets = self._direct(current)
            if targets is None:
                self._closures[start] = None
                return None
            pending.extend(t for t in targets if t not in seen)
        result = frozenset(seen - {start})
        self._closures[start] = result
        return result

    def _direct(self, path: Path) -> list[Path] | None:
        """The local files ``path`` imports directly (None: cannot tell)."""
        if not path.is_file():
            return []  # a conftest or __init__ that does not exist imports nothing
        imports = self._imports.get(path)
        if imports is None:
            imports = self._imports[path] = read_imports(path)
        if imports.opaque:
            return None
        targets: list[Path] = []
        for name, level, guarded in imports.names:
            resolved = self._resolve(path, name, level)
            if resolved is None:
                if not guarded:
                    return None
                continue
            targets += resolved
        return targets

    # --- resolving one import ---------------------------------------------------------------

    def _resolve(self, importer: Path, name: str, level: int) -> list[Path] | None:
        """The tests-folder files an import runs ([] for the application, the standard
        library or an installed package; None when it is none of these)."""
        key = (importer.parent if level == 0 else importer, name, level)
        if key in self._resolved:
            return self._resolved[key]
        if level:
            base = importer.parent
            for _ in range(level - 1):
                base = base.parent
            relative = _module_files(base, name.split(".") if name else []) or []
            result: list[Path] | None = [p for p in relative if self._inside(p)]
        else:
            parts = name.split(".")
            found = [_module_files(base, parts) for base in self._bases(importer, parts[0])]
            local = [files for files in found if files is not None]
            if local:
                result = [p for files in local for p in files if self._inside(p)]
            elif self._known_elsewhere(name.split(".")[0]):
                result = []
            else:
                result = None
        self._resolved[key] = result
        return result

    def _bases(self, importer: Path, top: str) -> list[Path]:
        """Folders an absolute import of ``top`` may be found in: the importer's folder and
        those above it (pytest's rootdir-based sys.path entries), the project root's ``src``,
        and any folder of the tests folder that holds ``top`` (a conftest may put any folder
        on ``sys.path``)."""
        bases = [folder for folder in importer.parents if folder.is_relative_to(self.root)]
        bases.append(self.root / "src")
        bases += self._tops().get(top, [])
        return list(dict.fromkeys(bases))

    def _tops(self) -> dict[str, list[Path]]:
        """Top-level module name -> the folders of the tests folder it can be imported from."""
        if self._top_index is None:
            index: dict[str, set[Path]] = {}
            for path in self.every_python_file():
                relative = path.relative_to(self.tests)
                folder = self.tests
                for part in relative.parts:
                    top = part.removesuffix(".py")
                    index.setdefault(top, set()).add(folder)
                    folder = folder / part
            self._top_index = {top: sorted(folders) for top, folders in index.items()}
        return self._top_index

    def _inside(self, path: Path) -> bool:
        """Files of the tests folder, and the conftests above it, are followed; the rest is
        the application's (``inputs``)."""
        return path.is_relative_to(self.tests) or path.name == "conftest.py"

    def _known_elsewhere(self, top: str) -> bool:
        """Is ``top`` a standard-library or installed module (found by the interpreter that
        also runs the tests)?"""
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return True
        if top not in self._installed:
            try:
                self._installed[top] = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                self._installed[top] = False
        return self._installed[top]


def _module_files(base: Path, parts: list[str]) -> list[Path] | None:
    """The files importing ``parts`` from ``base`` runs: each package's ``__init__.py`` on the
    way and the module itself ([] for a namespace package). None if ``parts[0]`` is not
    there."""
    if not parts:
        init = base / "__init__.py"
        return [init] if init.is_file() else []
    files: list[Path] = []
    folder = base
    for index, part in enumerate(parts):
        module = folder / f"{part}.py"
        package = folder / part
        if module.is_file():
            return [*files, module]  # what follows is an attribute of the module
        if not package.is_dir():
            return files if index else None
        init = package / "__init__.py"
        if init.is_file():
            files.append(init)
        elif index == 0 and not any(package.rglob("*.py")):
            return None  # a folder of that name that holds no Python is not this module
        folder = package
    return files


def _walk_python(folder: Path) -> Iterator[Path]:
    from testpool.hashing import walk_files

    for path in walk_files(folder):
        if path.suffix == ".py":
            yield path
