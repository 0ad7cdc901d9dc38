"""The package the image installs works on its own, away from the source tree.

The Dockerfile's build stage runs `pip wheel .` and its final stage installs that wheel; no
docker here, so this test does the same two steps (the wheel into a directory of its own, the
dependencies from this venv) and runs the installed `egressgw` from outside the repository:
a module or data file that the wheel leaves out shows up here, not on a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from egressgw.cli.main import main; sys.argv[0] = 'egressgw'; main()"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("image")
    wheels, target = work / "wheels", work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("egressgw-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def _egressgw(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", CLI, *argv], cwd=site.parent, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_installed_package_is_the_one_that_runs(installed: Path) -> None:
    where = _egressgw(installed, "selector", "canonical", "a == 'b'")
    assert where.returncode == 0, where.stderr
    env = {**os.environ, "PYTHONPATH": str(installed)}
    path = subprocess.run([sys.executable, "-c", "import egressgw; print(egressgw.__file__)"],
                          cwd=installed.parent, env=env, capture_output=True, text=True).stdout
    assert Path(path.strip()).is_relative_to(installed)


@pytest.mark.parametrize("argv", [
    ("install-manifests",), ("kube", "crds"), ("validate", "-f", str(ROOT / "examples" / "aws-public-ip")),
])  # fmt: skip
def test_the_installed_package_renders_what_the_source_tree_does(installed: Path, argv: tuple[str, ...]) -> None:
    from_wheel = _egressgw(installed, *argv)
    assert from_wheel.returncode == 0, from_wheel.stderr
    from_source = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=60)
    assert from_wheel.stdout == from_source.stdout
