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
