"""The package dependency rules of docs/ARCHITECTURE.md, read from the imports of the source tree."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, cli_env

SRC = REPO_ROOT / "src" / "ftscale"
# package -> the packages of ours it may import (docs/ARCHITECTURE.md, "Packages")
ALLOWED = {
    "errors": set(),
    "paper": set(),
    "laws": {"errors"},
    "data": {"errors"},
    "models": {"data", "errors"},
    "finetune": {"data", "models", "paper", "errors"},
    "study": {"data", "models", "finetune", "errors", "__version__"},
    "analysis": {"laws", "study", "finetune", "paper", "errors"},
    "report": {"analysis", "laws", "paper", "errors"},
    "cli": {
        "analysis",
        "data",
        "errors",
        "finetune",
        "importers",
        "laws",
        "models",
        "paper",
        "report",
        "study",
        "CURVE_RESIDUAL",
    },
    "api": {"analysis", "laws", "report", "errors", "CURVE_RESIDUAL"},
    "importers": {"models", "finetune", "study", "errors"},
}
_IMPORT = re.compile(r"^\s*(?:from ftscale\.(\w+)|import ftscale\.(\w+)|from ftscale import (\w+))", re.M)


def imports_of(package: str) -> dict[str, set[str]]:
    """Which of our packages each file of ``package`` imports (itself excluded)."""
    files = (
        [SRC / f"{package}.py"]
        if (SRC / f"{package}.py").is_file()
        else sorted((SRC / package).rglob("*.py"))
    )
    found = {}
    for path in files:
        names = {next(g for g in match if g) for match in _IMPORT.findall(path.read_text(encoding="utf-8"))}
        found[str(path.relative_to(SRC))] = names - {package}
    return found


def test_every_package_is_covered() -> None:
    packages = {
        p.stem for p in SRC.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    assert packages - {"__init__", "__main__", "configs"} == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = {
        f: sorted(names - ALLOWED[package])
        for f, names in imports_of(package).items()
        if names - ALLOWED[package]
    }
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"


def test_laws_and_analysis_never_import_torch() -> None:
    code = "import sys, ftscale.laws, ftscale.analysis, ftscale.report.tables; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
