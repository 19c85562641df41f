"""leaderboards/ depends on run files and record types only.

It may import evalsuite.records, evalsuite.rundir and evalsuite.errors, its
own modules, the standard library and a few display libraries. Anything else
(the runner, backends, tasks) would couple the site to evaluation internals.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.conftest import REPO

ALLOWED_EVALSUITE = {"evalsuite.records", "evalsuite.rundir", "evalsuite.errors"}
# numpy and choix: the Bradley–Terry fit of the pairwise ratings page (leaderboards/ratings.py).
ALLOWED_THIRD_PARTY = {"click", "jinja2", "numpy", "choix"}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: inside the package
                found.add("leaderboards")
            elif node.module:
                found.add(node.module)
    return found


def test_leaderboards_imports_only_records_rundir_errors():
    files = sorted((REPO / "leaderboards").rglob("*.py"))
    assert files, "no leaderboards package?"
    bad = {}
    for path in files:
        for module in imports(path):
            top = module.split(".")[0]
            ok = (
                module in ALLOWED_EVALSUITE
                or top == "leaderboards"
                or top in ALLOWED_THIRD_PARTY
                or (top in sys.stdlib_module_names and top != "evalsuite")
            )
            if not ok:
                bad.setdefault(str(path.relative_to(REPO)), []).append(module)
    assert bad == {}


def test_the_scanner_catches_a_forbidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from evalsuite.runner import run\nimport evalsuite.backends.hf\nfrom . import x\n")
    assert imports(probe) == {"evalsuite.runner", "evalsuite.backends.hf", "leaderboards"}
