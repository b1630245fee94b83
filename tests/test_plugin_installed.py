"""The pytest plugin as a user meets it: pktdemux built into a wheel and
installed by pip into a new virtual environment, then a separate pytest
process in a project of its own finds the plugin through the ``pytest11``
entry point alone (no ``-p``, no conftest), and a golden test of three
lines passes, fails with its diff, and is rewritten by --pktdemux-update.

The new environment sees this one's packages (Scapy, pytest...) through a
.pth file, so that nothing is downloaded; pktdemux itself comes only from
the wheel.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: the whole golden test a user writes
USER_TEST = """\
def test_closed_port(pktdemux_golden):
    pktdemux_golden.scenario("closed_port_rst.scn")
"""


def run(args: list[str | os.PathLike[str]], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTEST_ADDOPTS"}}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = ""
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The python of a new venv with pktdemux installed from a wheel."""
    base = tmp_path_factory.mktemp("user")
    source = base / "source"  # a copy: building must not write into the work tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".hypothesis"))
    wheels = base / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                 "-w", wheels, source], cwd=base)
    assert built.returncode == 0, built.stderr
    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = pathlib.Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            cwd=base).stdout.strip())
    (site / "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("pktdemux-*.whl"))
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel],
                    cwd=base)
    assert installed.returncode == 0, installed.stderr
    where = run([python, "-c", "import pktdemux; print(pktdemux.__file__)"], cwd=base)
    assert str(venv) in where.stdout, "pktdemux must come from the wheel, not from the work tree"
    return python


@pytest.fixture
def user_project(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copy(ROOT / "scenarios" / "closed_port_rst.scn", tmp_path)
    (tmp_path / "test_network.py").write_text(USER_TEST)
    return tmp_path


def test_installed_plugin_writes_checks_and_reports_a_golden(venv_python: pathlib.Path,
                                                             user_project: pathlib.Path) -> None:
    pytest_cmd = [venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

    missing = run(pytest_cmd, user_project)
    assert missing.returncode == 1
    assert "no golden file yet; write it with pytest --pktdemux-update" in missing.stdout

    updated = run([*pytest_cmd, "--pktdemux-update"], user_project)
    assert updated.returncode == 0, updated.stdout
    golden = (user_project / "closed_port_rst.golden").read_text()
    assert "R. seq 0 ack 1001 win 0 (ttl 64 id 0 DF len 40)" in golden

    assert run(pytest_cmd, user_project).returncode == 0

    scenario = user_project / "closed_port_rst.scn"
    scenario.write_text(scenario.read_text().replace("seq 1000 win 64240", "seq 1100 win 64240"))
    changed = run(pytest_cmd, user_project)
    assert changed.returncode == 1
    assert "+0.000000 > 10.0.0.1:81 > 10.0.0.2:40000 R. seq 0 ack 1101 win 0 (ttl 64 id 0 DF len 40)" in changed.stdout
    assert "Traceback" not in changed.stdout
