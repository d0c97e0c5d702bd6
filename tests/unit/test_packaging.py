"""What the wheel ships: the service and its commands, not the helpers of the build and the tests."""

from __future__ import annotations

import ast
import tomllib
from fnmatch import fnmatchcase

from tests.service_proc import ROOT


def test_the_wheel_leaves_devtools_out() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    # setuptools matches each package name against the patterns as fnmatch does.
    shipped = [
        p
        for p in ("internal", "internal.tools", "devtools", "bench", "tests")
        if any(fnmatchcase(p, pattern) for pattern in include)
    ]
    assert shipped == ["internal", "internal.tools"]


def test_every_module_of_internal_tools_serves_a_console_script() -> None:
    """A build- or test-time helper belongs in devtools/ (make loc-build, make up-metric), not here."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entry = {t.partition(":")[0] for t in pyproject["project"]["scripts"].values()}
    reached: set[str] = set()
    todo = [m for m in entry if m.startswith("internal.tools.")]
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("internal.tools"):
                names = [node.module] if node.module != "internal.tools" else []
                names += [f"internal.tools.{a.name}" for a in node.names if node.module == "internal.tools"]
                todo.extend(names)
    present = {f"internal.tools.{p.stem}" for p in (ROOT / "internal" / "tools").glob("*.py")}
    assert present - {"internal.tools.__init__"} == reached
