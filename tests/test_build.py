"""The build: build_info() contents, and an import error that says how to rebuild."""
import os
import subprocess
import sys

import torch

import fusedrnn


def test_build_info():
    info = fusedrnn.build_info()
    assert set(info) >= {"torch", "cuda", "archs", "simt"}
    assert info["torch"] == torch.__version__
    assert isinstance(info["cuda"], bool) and isinstance(info["simt"], bool)
    if info["cuda"]:
        assert info["archs"], "a CUDA build must name its archs"
    else:
        assert info["archs"] == []


def test_ci_built_what_it_expects():
    """CI sets FUSEDRNN_EXPECT_CUDA=1: the CUDA kernels must really have been compiled."""
    if os.environ.get("FUSEDRNN_EXPECT_CUDA") == "1":
        info = fusedrnn.build_info()
        assert info["cuda"], info
        assert {"8.0", "9.0"} <= set(info["archs"]), info


def test_import_error_names_the_fix():
    code = "import sys; sys.modules['fusedrnn._C'] = None; import fusedrnn"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "pip install --no-build-isolation" in r.stderr


def test_import_does_not_touch_cuda():
    code = ("import torch, fusedrnn; "
            "assert not torch.cuda.is_initialized(), 'fusedrnn initialised CUDA at import'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _build_dir():
    """build/<tag>/ of the library under test (setup.build_tag), or None when it was built
    elsewhere (an installed wheel, another checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    try:
        import setup
    finally:
        sys.path.pop(0)
    info = fusedrnn.build_info()
    d = os.path.join(root, "build", setup.build_tag(info["torch"], info["cuda"], info["archs"]))
    lib = os.path.realpath(fusedrnn._C.__file__)
    if not os.path.isdir(d) or not lib.startswith(root + os.sep):
        return None
    return d


def test_rebuild_compiles_nothing():
    """The objects of this build are kept in build/<tag>/temp, and ninja, asked again, has
    nothing to compile: a re-run of scripts/setup.sh recompiles only what changed. (The build
    folders used to be fresh temporary ones, so every `pip install -e .` compiled everything.)"""
    import pytest

    d = _build_dir()
    if d is None:
        pytest.skip("fusedrnn was not built from this checkout's setup.py")
    temp = os.path.join(d, "temp")
    assert os.path.exists(os.path.join(temp, "build.ninja")), os.listdir(d)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "scripts"))
    try:
        import build_plan
    finally:
        sys.path.pop(0)
    r = build_plan.dry_run(temp)  # on a copy: ninja may delete a log it cannot read
    if r is None:
        pytest.skip("ninja not found")
    assert r.returncode == 0, r.stderr
    assert "no work to do" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    # The library the tests import is the one linked in build/<tag>/lib, not older than any object.
    libs = [os.path.join(p, f) for p, _, fs in os.walk(os.path.join(d, "lib")) for f in fs
            if f.startswith("_C") and f.endswith(".so")]
    assert libs, "no linked library under " + d
    newest_obj = max(os.path.getmtime(os.path.join(p, f))
                     for p, _, fs in os.walk(temp) for f in fs if f.endswith(".o"))
    assert os.path.getmtime(libs[0]) >= newest_obj
