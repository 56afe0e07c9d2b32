"""The command line starts quickly: nothing heavy is imported before a command needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from types import ModuleType

import collabkit as ck
from tests.conftest import run_cli

#: what a command imports only when it runs (each costs 0.2-1.5 s to import)
HEAVY = ("torch", "pandas", "numpy", "numba", "fastapi", "sqlalchemy", "matplotlib")

EVERY_HELP = """
import json, sys
import typer.main
from collabkit.cli import app
group = typer.main.get_command(app)
names = [[name] for name in group.commands]
names += [[name, sub] for name, cmd in group.commands.items() for sub in getattr(cmd, "commands", {})]
for argv in [[], *names]:
    try:
        group.main([*argv, "--help"], prog_name="collabkit", standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps({"helps": len(names), "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


def test_no_help_imports_anything_heavy():
    """`collabkit --help` and every `collabkit COMMAND --help`, in a fresh process."""
    code = f"HEAVY = {HEAVY!r}\n{EVERY_HELP}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["helps"] > 20 and result["heavy"] == [], result


def test_version():
    assert run_cli("--version").strip() == f"collabkit {version('collabkit')}"


def test_the_package_loads_its_public_names_on_first_use():
    """Every public name resolves, and `recommend` stays the function when the subpackage of the
    same name is imported first (as when the package imported everything eagerly)."""
    code = "import collabkit.recommend, collabkit as ck; print(type(ck.recommend).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "function"
    assert all(getattr(ck, name) is not None for name in ck.__all__)
    assert callable(ck.recommend) and not isinstance(ck.recommend, ModuleType)
    assert set(ck.__all__) <= set(dir(ck))
