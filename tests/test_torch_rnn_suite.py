"""scripts/torch_rnn_suite.py end to end, on two small stand-ins for PyTorch's test files (written
here, not PyTorch's): both runs must name the same tests, the second must see fusedrnn's classes
wherever PyTorch's tests look up torch.nn's (torch.nn, torch.nn.modules.rnn, module_db) on the
CPU backend, and a test that fails only with fusedrnn must be reported as such."""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "torch_rnn_suite.py")

FAKE_TEST_NN = '''
import os
import torch
import torch.nn as nn
from torch.testing._internal.common_utils import TestCase, run_tests

SWAPPED = os.environ.get("FUSEDRNN_SUITE_SWAP") == "1"


class TestNN(TestCase):
    def test_lstm_class_seen_by_tests(self):
        import fusedrnn
        classes = (nn.LSTM, nn.modules.LSTM, torch.nn.modules.rnn.LSTM, nn.GRUCell)
        want = (fusedrnn.LSTM,) * 3 + (fusedrnn.GRUCell,) if SWAPPED else \\
            (torch.nn.modules.rnn.LSTM,) * 3 + (torch.nn.modules.rnn.GRUCell,)
        self.assertEqual(classes, want)
        self.assertEqual(fusedrnn.get_backend(), "cpu" if SWAPPED else "auto")

    def test_rnn_runs(self):
        out, h = nn.RNN(3, 4)(torch.randn(5, 2, 3))
        self.assertEqual(out.shape, (5, 2, 4))

    def test_gru_module_is_torch_nn(self):  # fails with fusedrnn only
        self.assertEqual(type(nn.GRU(2, 3)).__module__, "torch.nn.modules.rnn")

    def test_linear_not_selected(self):
        raise AssertionError("not an RNN test: must not be selected")


if __name__ == "__main__":
    run_tests()
'''

FAKE_TEST_MODULES = '''
import os
import torch
from torch.testing._internal.common_device_type import instantiate_device_type_tests
from torch.testing._internal.common_modules import module_db, modules
from torch.testing._internal.common_utils import TestCase, run_tests

SWAPPED = os.environ.get("FUSEDRNN_SUITE_SWAP") == "1"


class TestModule(TestCase):
    @modules([m for m in module_db if m.name in ("nn.LSTM", "nn.RNNCell", "nn.Linear")],
             allowed_dtypes=[torch.float32])
    def test_cls(self, device, dtype, module_info, training):
        fused = module_info.module_cls.__module__.startswith("fusedrnn")
        self.assertEqual(fused, SWAPPED and module_info.name != "nn.Linear")


instantiate_device_type_tests(TestModule, globals(), only_for="cpu")

if __name__ == "__main__":
    run_tests()
'''


def test_suite_swaps_and_reports(tmp_path):
    tests = tmp_path / "test"
    tests.mkdir()
    (tests / "test_nn.py").write_text(textwrap.dedent(FAKE_TEST_NN))
    (tests / "test_modules.py").write_text(textwrap.dedent(FAKE_TEST_MODULES))
    saved = tmp_path / "runs.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, SCRIPT, "--tests", str(tests), "--save", str(saved)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr  # one fusedrnn-only failure
    assert "fusedrnn-only failures: 1" in r.stdout, r.stdout
    assert "test_gru_module_is_torch_nn" in r.stdout.split("fusedrnn-only failures")[1]

    runs = json.loads(saved.read_text())
    nn_base = runs["torch.nn"]["test_nn.py"]["outcomes"]
    nn_fused = runs["fusedrnn"]["test_nn.py"]["outcomes"]
    assert sorted(nn_base) == sorted(nn_fused)  # the same tests, under the same names
    assert not any("test_linear_not_selected" in k for k in nn_base)  # selection by name
    assert set(nn_base.values()) == {"passed"}
    assert sorted(k.split("::")[-1] for k, v in nn_fused.items() if v == "failed") == \
        ["test_gru_module_is_torch_nn"]

    mod_base = runs["torch.nn"]["test_modules.py"]["outcomes"]
    mod_fused = runs["fusedrnn"]["test_modules.py"]["outcomes"]
    # "-k RNN or LSTM or GRU": nn.LSTM's (train and eval mode) and nn.RNNCell's, not Linear's
    assert sorted(mod_base) == sorted(mod_fused) and len(mod_base) == 3, mod_base
    assert set(mod_base.values()) == set(mod_fused.values()) == {"passed"}, runs
