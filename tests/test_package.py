"""The deployment package: the files a publish uploads, chosen by `.funcignore` the way Core Tools chooses them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]
MAX_PACKAGE_BYTES = 1024 * 1024

# Core Tools (FileSystemHelpers.GetLocalFiles) skips these by name at any depth before .funcignore applies.
ALWAYS_SKIPPED_DIRECTORIES = frozenset({".git", ".vscode"})
ALWAYS_SKIPPED_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})
EXCLUDED_TOP_LEVEL = ("tests", "devstack", "benchmarks", "docs", "infra", "tools", "scripts", ".github", ".ci")


class FuncIgnore:
    """Core Tools' `.funcignore` matcher (GitIgnoreParser, a port of codemix/gitignore-parser), in Python.

    Each pattern becomes a regex anchored at the start of the path relative to the app root (`/`-separated):
    `**` matches anything, `*` anything but `/`, and no match is anchored at the end, so a pattern matches
    every path it is a prefix of. A path is accepted when a `!` pattern matches it or no other pattern does.
    """

    _SPECIAL = re.compile(r"[\-\[\]/{}()+?.\\^$|]")

    def __init__(self, content: str) -> None:
        positives: list[str] = []
        negatives: list[str] = []
        for raw in content.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negative = line.startswith("!")
            line = line[1:] if negative else line
            line = line[1:] if line.startswith("/") else line
            (negatives if negative else positives).append(line)
        self._positive = self._compile(positives)
        self._negative = self._compile(negatives)

    @classmethod
    def _compile(cls, patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return re.compile(r"$^")
        prepared = [cls._prepare(pattern) for pattern in sorted(patterns)]
        return re.compile("^((" + ")|(".join(prepared) + "))")

    @classmethod
    def _prepare(cls, pattern: str) -> str:
        escaped = cls._SPECIAL.sub(lambda match: "\\" + match.group(0), pattern)
        return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")

    def accepts(self, path: str) -> bool:
        """Whether a publish keeps `path` (relative, `/`-separated)."""
        return bool(self._negative.match(path)) or not self._positive.match(path)


def package_files(app_dir: Path) -> dict[str, int]:
    """The files a publish of `app_dir` uploads, relative path -> size in bytes."""
    ignore = FuncIgnore((app_dir / ".funcignore").read_text())
    files: dict[str, int] = {}
    for directory, subdirectories, names in os.walk(app_dir):
        subdirectories[:] = [name for name in subdirectories if name.lower() not in ALWAYS_SKIPPED_DIRECTORIES]
        for name in names:
            if name.lower() in ALWAYS_SKIPPED_FILES:
                continue
            path = Path(directory, name)
            relative = path.relative_to(app_dir).as_posix()
            if ignore.accepts(relative):
                files[relative] = path.stat().st_size
    return files


@pytest.fixture(scope="module")
def package() -> dict[str, int]:
    """The package built from this checkout."""
    return package_files(APP_DIR)


def test_matcher_matches_prefixes_like_core_tools() -> None:
    """A pattern matches every path it is a prefix of; `*` stops at `/`, `**` does not; `!` re-includes."""
    ignore = FuncIgnore("# comment\ntests/\n/docs\n*.pyc\n**/__pycache__/\nMakefile\n.venv*/\n!docs/keep.md\n")
    assert not ignore.accepts("tests/test_x.py")
    assert not ignore.accepts("docs/deploy.md")
    assert ignore.accepts("docs/keep.md")
    assert not ignore.accepts("a.pyc")
    assert ignore.accepts("renewal/a.pyc")  # `*` does not cross `/`: Core Tools needs `**/*.pyc` for that
    assert not ignore.accepts("renewal/__pycache__/app.cpython-313.pyc")
    assert not ignore.accepts("Makefile.local")  # prefix match, unlike git
    assert not ignore.accepts(".venv-worker/bin/python")
    assert ignore.accepts("renewal/tests_helpers.py")


def test_package_holds_the_app(package: dict[str, int]) -> None:
    """The package holds the entry point, host.json, requirements.txt and every module of `renewal`."""
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(package)
    modules = {p.relative_to(APP_DIR).as_posix() for p in (APP_DIR / "renewal").rglob("*.py")}
    assert modules
    assert modules <= set(package)


def test_package_leaves_out_development_files(package: dict[str, int]) -> None:
    """Nothing from tests, the local stack, benchmarks, docs, infra, tools, virtualenvs or caches is uploaded."""
    unwanted = [
        path
        for path in package
        if path.split("/")[0] in EXCLUDED_TOP_LEVEL
        or path.startswith(".venv")
        or "__pycache__" in path.split("/")
        or path.endswith(".pyc")
        or path in {"azure.yaml", "Makefile", "pyproject.toml", "local.settings.json.example"}
        or path.startswith("requirements-")
    ]
    assert unwanted == []


def test_package_is_small(package: dict[str, int]) -> None:
    """The package stays under 1 MiB: only the app's own source is uploaded; dependencies are built remotely."""
    total = sum(package.values())
    assert total < MAX_PACKAGE_BYTES, f"{total} bytes in {len(package)} files"


def test_the_console_script_names_the_cli_entry_point() -> None:
    """``renewal`` (pyproject.toml's [project.scripts]) runs ``renewal.cli:main``, the same as ``python -m renewal``."""
    import importlib
    import tomllib

    scripts = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["renewal"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert "main(" in (APP_DIR / "renewal" / "__main__.py").read_text()
