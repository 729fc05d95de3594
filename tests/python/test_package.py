"""The package as a user gets it: the library search order and its error, an
install with pip from Debian packages only, and the documentation that help()
shows."""
import inspect
import os
import shutil
import subprocess
import sys

import pytest

import wscore
import wscore.asyncio

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.abspath(wscore.library_path) if os.path.exists(wscore.library_path) else wscore.library_path


def _python(code, cwd, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("WSCORE_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_missing_library_is_a_clear_import_error(tmp_path):
    r = _python("import wscore", str(tmp_path), PYTHONPATH=os.path.join(ROOT, "bindings", "python"),
                WSCORE_LIBRARY=str(tmp_path / "nowhere" / "libwscore.so"))
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "WSCORE_LIBRARY" in r.stderr
    assert str(tmp_path / "nowhere" / "libwscore.so") in r.stderr  # says where it looked


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """bindings/python installed with pip into a target directory, from a copy of the
    sources (pip builds in the source directory; the checkout stays clean)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not installed (Debian: python3-pip)")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(os.path.join(ROOT, "bindings", "python"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "target"
    # --no-deps: with --target pip does not count the system's python3-cffi as
    # installed and would fetch cffi from the network.
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                        "--no-index", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return target


def test_pip_install_then_library_from_env_or_system_path(installed, tmp_path):
    code = "import wscore, wscore.asyncio; print(wscore.__version__, wscore.library_path, wscore.__file__)"
    r = _python(code, str(tmp_path), PYTHONPATH=str(installed), WSCORE_LIBRARY=LIB)
    assert r.returncode == 0, r.stderr
    version, path, where = r.stdout.split()
    assert version == wscore.__version__ and path == LIB and where.startswith(str(installed))
    assert (installed / "wscore" / "py.typed").exists()  # the type hints are for checkers too
    # Without the variable an installed copy does not look for build trees: the
    # system's library path (here LD_LIBRARY_PATH) it is.
    r = _python(code, str(tmp_path), PYTHONPATH=str(installed), LD_LIBRARY_PATH=os.path.dirname(LIB))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "libwscore.so.0"


def test_installed_copy_without_a_library_says_what_to_do(installed, tmp_path):
    r = _python("import wscore", str(tmp_path), PYTHONPATH=str(installed))
    if r.returncode == 0:
        pytest.skip("a libwscore is installed on this system")
    assert "Set WSCORE_LIBRARY" in r.stderr and "Tried:" in r.stderr


@pytest.mark.parametrize("fn", [wscore.connect, wscore.serve, wscore.asyncio.connect, wscore.asyncio.serve])
def test_help_documents_every_argument(fn):
    doc = inspect.getdoc(fn)
    assert doc and "::" in doc  # an example
    documented = {"connect": wscore.connect, "serve": wscore.serve}[fn.__name__]
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind is p.KEYWORD_ONLY:
            assert f"``{name}``" in inspect.getdoc(documented) or f"``{name}``" in doc, (fn, name)


def test_public_api_has_docstrings_and_hints():
    for obj in (wscore.WebSocket, wscore.Server, wscore.asyncio.WebSocket, wscore.asyncio.Server):
        assert inspect.getdoc(obj), obj
        for name, member in vars(obj).items():
            if name.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"{obj.__name__}.{name}"
    assert inspect.signature(wscore.connect).return_annotation in (wscore.WebSocket, "WebSocket")
    assert inspect.signature(wscore.WebSocket.recv).parameters["timeout"].annotation != inspect.Parameter.empty
