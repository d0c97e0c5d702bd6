"""Check a built wheel (make loc-build): every console script imports from the wheel itself and answers
``--help``.

The source tree is installed in .venv in editable mode, so importing ``internal`` there proves nothing
about the wheel. Each entry point is run in a child interpreter in isolated mode (no current directory,
no PYTHONPATH) with the wheel first on sys.path; the child checks that the module came from the wheel,
then calls the entry point as its console script would, with ``--help``. The dependencies come from the
interpreter's environment, as they would for ``pip install`` of the wheel.

    python -m devtools.wheel_check dist/l0_orders-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

CHILD = """
import importlib, sys
wheel, name, target = sys.argv[1:4]
sys.path.insert(0, wheel)
module_name, _, function = target.partition(":")
module = importlib.import_module(module_name)
if not str(module.__file__).startswith(wheel):
    sys.exit(f"{module_name} was imported from {module.__file__}, not from the wheel")
sys.argv = [name, "--help"]
getattr(module, function)()
"""


def console_scripts(wheel: Path) -> dict[str, str]:
    """name -> "module:function", from the wheel's entry_points.txt."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        if not names:
            return {}
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(names[0]).decode("utf-8"))
    return dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}


def check(wheel: Path) -> list[str]:
    """Problems found; empty when every console script imports from the wheel and prints its help."""
    scripts = console_scripts(wheel)
    if not scripts:
        return [f"{wheel.name}: no console scripts in its entry_points.txt"]
    problems = []
    for name, target in sorted(scripts.items()):
        result = subprocess.run(
            [sys.executable, "-I", "-c", CHILD, str(wheel.resolve()), name, target],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0 or "usage" not in result.stdout.lower():
            problems.append(f"{name} ({target}): exit {result.returncode}: {result.stderr.strip()[-500:]}")
        else:
            print(f"wheel: {name} = {target}: imports from the wheel, --help answers")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m devtools.wheel_check WHEEL", file=sys.stderr)
        return 2
    problems = check(Path(args[0]))
    for problem in problems:
        print(f"wheel: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
