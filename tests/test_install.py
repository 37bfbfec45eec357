"""The README's install resolves on every platform and Python version it promises.

pip resolves the requirements for another platform with ``--dry-run --platform ...
--python-version ...``, but it evaluates environment markers (``sys_platform == "darwin"``)
for the machine it runs on, so each target's markers are evaluated here first, with
``packaging``, as that target's pip would. Needs the package index: without it the tests skip,
saying so; CI reaches it.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import ROOT

# pip takes exact platform tags: every tag a wheel for that platform may carry.
PLATFORMS = {
    "linux-x86_64": {"tags": ["manylinux_2_39_x86_64", "manylinux_2_34_x86_64", "manylinux_2_28_x86_64",
                              "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_17_x86_64",
                              "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
                              "manylinux_2_5_x86_64", "manylinux1_x86_64", "linux_x86_64"],
                     "markers": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                                 "platform_machine": "x86_64"}},
    "macos-arm64": {"tags": [f"macosx_{major}_0_{arch}" for major in (15, 14, 13, 12, 11)
                             for arch in ("arm64", "universal2")]
                    + [f"macosx_10_{minor}_universal2" for minor in (16, 15, 14, 13, 12, 11, 10, 9)],
                    "markers": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                                "platform_machine": "arm64"}},
    "windows-amd64": {"tags": ["win_amd64"],
                      "markers": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                                  "platform_machine": "AMD64"}},
}
PYTHONS = ("3.11", "3.12", "3.13")
TARGETS = [(platform, python) for platform in PLATFORMS for python in PYTHONS]
UNREACHABLE = re.compile(r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
                         r"Failed to establish a new connection|Could not fetch URL|ProxyError|Connection refused")


def requirements_for(path: Path, environment: dict) -> list[str]:
    """The lines of a requirements file (and the files it includes) as pip on ``environment``
    would use them: markers evaluated, options kept, included requirement files inlined."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            lines += requirements_for(path.parent / line[3:].strip(), environment)
        elif line.startswith("-c "):
            lines.append(f"-c {path.parent / line[3:].strip()}")
        else:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                requirement.marker = None
                lines.append(str(requirement))
    return lines


def dry_run_command(platform: str, python: str, workdir: Path) -> list[str]:
    """The pip command that resolves the requirements as a ``python`` on ``platform`` would."""
    environment = default_environment() | PLATFORMS[platform]["markers"] | {
        "python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
        "platform_python_implementation": "CPython"}
    requirements = workdir / f"requirements-{platform}-{python}.txt"
    requirements.write_text("\n".join(requirements_for(ROOT / "requirements-dev.txt", environment)) + "\n")
    tags = [option for tag in PLATFORMS[platform]["tags"] for option in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--target", str(workdir / f"target-{platform}-{python}"),
            *tags, "--python-version", python, "--implementation", "cp", "-r", str(requirements)]


# The folder of this session's dry runs, named for pytest-xdist's workers, which inherit it.
RESOLUTIONS_ENV = "EXOPLANET_TEST_RESOLUTIONS"
RESOLUTION_SECONDS = 600


def _result_file(workdir: Path, platform: str, python: str) -> Path:
    return workdir / f"result-{platform}-{python}.json"


def start_resolutions(workdir: Path) -> None:
    """Start every target's dry run in the background, side by side (each spends most of its
    time, about a minute, waiting on the index); each writes its result to a JSON file in
    ``workdir`` when it ends. conftest starts them as the session starts, so they overlap the
    tests that run before; the processes of a session that ends first are killed."""
    if os.environ.get(RESOLUTIONS_ENV):
        return
    os.environ[RESOLUTIONS_ENV] = str(workdir)
    processes = []

    def wait_for(process: subprocess.Popen, target: tuple) -> None:
        try:
            stdout, stderr = process.communicate(timeout=RESOLUTION_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        result = {"returncode": process.returncode, "stdout": stdout, "stderr": stderr}
        partial = _result_file(workdir, *target).with_suffix(".partial")
        try:  # written whole, then named: a worker never reads half a result
            partial.write_text(json.dumps(result))
            partial.replace(_result_file(workdir, *target))
        except OSError:  # the session ended and its folder is gone
            pass

    for target in TARGETS:
        process = subprocess.Popen(dry_run_command(*target, workdir), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        processes.append(process)
        # A daemon thread: a session that ends before the dry runs does not wait for them.
        threading.Thread(target=wait_for, args=(process, target), daemon=True).start()
    atexit.register(lambda: [process.kill() for process in processes if process.poll() is None])


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict:
    """Every target's dry run (started by conftest, or here if it was not), as
    ``subprocess.CompletedProcess``es."""
    start_resolutions(tmp_path_factory.mktemp("install"))
    workdir = Path(os.environ[RESOLUTIONS_ENV])
    deadline = time.monotonic() + RESOLUTION_SECONDS + 60
    while not all(_result_file(workdir, *target).exists() for target in TARGETS):
        assert time.monotonic() < deadline, f"the dry runs in {workdir} did not finish"
        time.sleep(0.5)
    results = {}
    for target in TARGETS:
        result = json.loads(_result_file(workdir, *target).read_text())
        results[target] = subprocess.CompletedProcess([], result["returncode"], result["stdout"], result["stderr"])
    if all(UNREACHABLE.search(r.stderr) and r.returncode for r in results.values()):
        pytest.skip("the package index is unreachable from this machine; CI checks the install resolution")
    return results


def test_markers_pick_the_tensorflow_build_each_platform_has():
    linux = requirements_for(ROOT / "requirements.txt", default_environment() | PLATFORMS["linux-x86_64"]["markers"])
    mac = requirements_for(ROOT / "requirements.txt", default_environment() | PLATFORMS["macos-arm64"]["markers"])
    assert "tensorflow-cpu==2.21.0" in linux and not any(r.startswith("tensorflow==") for r in linux)
    assert "tensorflow==2.21.0" in mac and not any(r.startswith("tensorflow-cpu") for r in mac)


def test_pins_are_split_runtime_dev_and_constraints():
    runtime = (ROOT / "requirements.txt").read_text()
    assert "pytest" not in runtime and "-c constraints.txt" in runtime
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    constraints = (ROOT / "constraints.txt").read_text()
    for transitive in ("protobuf==", "ml-dtypes==", "optree=="):
        assert transitive in constraints


@pytest.mark.parametrize("platform, python", TARGETS, ids=[f"{p}-py{v}" for p, v in TARGETS])
def test_requirements_resolve(resolutions, platform, python):
    result = resolutions[(platform, python)]
    tail = " | ".join(line for line in result.stderr.splitlines()[-3:] if line.strip())
    assert result.returncode == 0, f"{platform}, Python {python}: {tail}"
    assert "Would install" in result.stdout
    installed = result.stdout.lower()
    assert ("tensorflow-2.21.0" if platform.startswith("macos") else "tensorflow_cpu-2.21.0") in installed
