"""What `pip install .` installs: everything under the ppl_vae namespace, nothing at the top level."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declared_packages() -> dict[str, Path]:
    """{package name: its folder} as pyproject.toml declares them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config.get("package-dir", {})
    folders = {}
    for name in config["packages"]:
        parent, _, last = name.rpartition(".")
        folders[name] = ROOT / (mapped[name] if name in mapped else
                                os.path.join(folders[parent] if parent else ROOT, last))
    return folders


def test_every_package_folder_is_declared():
    declared = {path.resolve() for path in declared_packages().values()}
    for top in ("ppl_vae", "models", "guides"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.parent.resolve() in declared, f"{init.parent} is missing from pyproject.toml's packages"


def test_wheel_installs_models_and_guides_inside_the_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ppl_vae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ppl_vae"}, tops
    assert "ppl_vae/models/vae.py" in names and "ppl_vae/guides/gaussian.py" in names
    assert not any(n.startswith(("models/", "guides/", "scripts/", "tests/")) for n in names)
