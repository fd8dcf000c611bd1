"""A plain wheel install works: built with pip, installed non-editable into a fresh venv, it runs.

The wheel must carry the message schemas (read with importlib.resources), its entry point must start,
and it must hold nothing of the development tools: no devtools/ (the local stack, the demo) and no
moto among the requirements of a plain install.

Needs PyPI the first time: the requirements are downloaded once as wheels into .cache/wheels, and
later runs install from there without the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from services.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.packaging

WHEELS = PROJECT_ROOT / ".cache" / "wheels"
OFFLINE = ["--no-index", "--find-links", str(WHEELS)]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
# Run by the venv's python, in isolated mode (-I) from an empty folder: only the installed wheel
# can answer, never the checkout.
PROBE = """
import importlib.metadata, importlib.util, json, uuid
import services
from services.core.codec import SCHEMAS, decode, encode
from services.core.messages import new_message
from services.core.payloads import JobQueued, QueuedLecture

job_id = uuid.uuid4()
sent = new_message(
    JobQueued(
        owner="instructor-1",
        course_name="Wheel",
        curriculum="PKG-1",
        staging_prefix=f"staging/{job_id}/",
        manifest_key=f"staging/{job_id}/manifest.json",
        video_count=1,
        course_id=job_id,
        lectures=(QueuedLecture(index=0, title="Wheel"),),
    ),
    job_id=job_id,
    attempt=1,
    producer="wheel-test",
)
print(json.dumps({
    "round_trip": decode(encode(sent)) == sent,
    "services": services.__file__,
    "schemas": str(SCHEMAS),
    "requires": importlib.metadata.requires("coursecast"),
    "devtools": importlib.util.find_spec("devtools") is not None,
    "moto": importlib.util.find_spec("moto") is not None,
}))
"""


def pip(*args: str | Path, python: Path | None = None) -> None:
    target = ["--python", str(python)] if python is not None else []
    subprocess.run([*PIP, *target, *map(str, args)], check=True, timeout=240)


def build_requirements() -> list[str]:
    """The [build-system] requirements of pyproject.toml (setuptools, pinned)."""
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as file:
        requires: list[str] = tomllib.load(file)["build-system"]["requires"]
    return requires


def build_wheel(dist: Path) -> Path:
    """`pip wheel` of the checkout, its build requirements from the wheel cache once they are there."""
    try:
        pip("wheel", "--no-deps", *OFFLINE, "-w", dist, PROJECT_ROOT)
    except subprocess.CalledProcessError:
        pip("download", "--no-deps", "-d", WHEELS, *build_requirements())
        pip("wheel", "--no-deps", *OFFLINE, "-w", dist, PROJECT_ROOT)
    (wheel,) = dist.glob("coursecast-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> None:
    """A plain (non-editable) install of `wheel` and its requirements into the venv at `venv`."""
    python = venv / "bin" / "python"
    try:
        pip("install", "--no-compile", *OFFLINE, wheel, python=python)
    except subprocess.CalledProcessError:
        # A requirement not in the cache yet (the first run, or a new pin): fetch them all once.
        forget_own_wheels()
        pip("wheel", "--find-links", WHEELS, "-w", WHEELS, wheel)
        forget_own_wheels()
        pip("install", "--no-compile", *OFFLINE, wheel, python=python)


def forget_own_wheels() -> None:
    """Drop coursecast's own wheel from the cache, where `pip wheel` saves it beside its requirements.
    Its version does not change with a new pin, so a later `pip wheel` would take the cached copy
    ("File was already downloaded") and resolve that copy's old requirements: a new pin would never
    be fetched, and every later install would fail."""
    for own in WHEELS.glob("coursecast-*.whl"):
        own.unlink()


def test_the_wheel_installs_plainly_into_a_fresh_venv_and_runs_without_the_checkout() -> None:
    WHEELS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coursecast-wheel-") as scratch:
        root = Path(scratch)
        wheel = build_wheel(root / "dist")
        names = zipfile.ZipFile(wheel).namelist()
        assert "services/schemas/envelope.v1.json" in names
        assert "services/schemas/JobQueued.v1.json" in names
        # The dashboard, served by the api at /, with the vendored hls.js: the wheel is self-contained.
        for asset in ("index.html", "app.js", "style.css", "vendor/hls.min.mjs", "vendor/hls.js.LICENSE",
                      "vendor/SHA256SUMS"):  # fmt: skip
            assert f"services/api/static/{asset}" in names, asset
        # services/ (schemas included) and the metadata; no devtools/, tests/ or bench/.
        assert {top for top in {name.split("/")[0] for name in names} if not top.endswith(".dist-info")} == {
            "services"
        }

        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
        install(wheel, venv)

        usage = subprocess.run(
            [venv / "bin" / "coursecast", "--help"], cwd=root, capture_output=True, text=True, timeout=60
        )
        assert usage.returncode == 0, usage.stderr
        assert "Usage" in usage.stdout

        probe = subprocess.run(
            [venv / "bin" / "python", "-I", "-c", PROBE],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        found = json.loads(probe.stdout)
        assert found["round_trip"] is True
        site = str(venv / "lib")
        assert found["services"].startswith(site), found["services"]
        assert found["schemas"].startswith(site), found["schemas"]
        plain = [r for r in found["requires"] if "extra ==" not in r]
        assert plain, found["requires"]
        assert not [r for r in plain if r.lower().startswith("moto")], plain
        assert found["moto"] is False
        assert found["devtools"] is False
    assert not root.exists()
