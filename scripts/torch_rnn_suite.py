"""PyTorch's own RNN tests, run against torch.nn and then against fusedrnn.

    .venv/bin/python scripts/torch_rnn_suite.py --tests DIR [--save out.json]

DIR is a folder holding PyTorch's test/test_nn.py and/or test/test_modules.py (the test/
folder of a PyTorch source checkout). They are not shipped with torch's wheels nor with
fusedrnn: take them from the PyTorch sources of the installed version, e.g.

    git clone https://github.com/pytorch/pytorch && git -C pytorch checkout v2.14.1
    .venv/bin/python scripts/torch_rnn_suite.py --tests pytorch/test

(they import torch.testing._internal from the installed torch, so the versions must agree).
A folder holding only the RNN-related part of test_nn.py works as well.

The selected tests run on the CPU (PYTORCH_TESTING_DEVICE_ONLY_FOR=cpu), twice, each in its
own pytest process:
  1. plain torch.nn;
  2. with torch.nn's six recurrent classes replaced by fusedrnn's before the tests are
     imported: torch.nn.X, torch.nn.modules.X and torch.nn.modules.rnn.X for
     X in RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, and the module_db entries of
     torch.testing._internal.common_modules (their module_cls; test names stay torch.nn's,
     so both runs name the same tests); each test runs under fusedrnn.backend("cpu").
Selected: in test_nn.py the tests whose names contain rnn, lstm or gru (any case) plus the
ones that build RNN modules under other names (SUITE_NN_EXTRA), in test_modules.py the
module_db tests of the six classes (-k "RNN or LSTM or GRU").

It prints the counts of both runs and each test that fails with fusedrnn but passes with
torch.nn ("fusedrnn-only failures"), with its exception line. The exit status is 1 when there
are such failures. Which fusedrnn is tested: the one `import fusedrnn` finds (PYTHONPATH may
point at another build, e.g. an older commit built in place); its path is printed.
--save FILE keeps both runs' outcomes; --baseline FILE reuses the torch.nn run of such a file
(it depends on torch only). Extra pytest arguments go after "--".

This file is also the pytest plugin both runs load (-p torch_rnn_suite): it does the
replacement and records every test's outcome.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

RNN_CLASSES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")

# test_nn.py tests that build RNN modules without rnn/lstm/gru in their names.
SUITE_NN_EXTRA = ("cudnn_forward_exception", "pack_sequence_batch_sizes", "partial_flat_weights",
                  "variable_sequence")
SELECTION = {
    "test_nn.py": " or ".join(("rnn", "lstm", "gru") + SUITE_NN_EXTRA),
    "test_modules.py": "RNN or LSTM or GRU",
}

_ENV_SWAP = "FUSEDRNN_SUITE_SWAP"
_ENV_OUT = "FUSEDRNN_SUITE_OUT"


# ------------------------------------------------------------------------ the pytest plugin
def swap_in_fusedrnn():
    """Replaces torch.nn's recurrent classes by fusedrnn's, where tests look them up."""
    import torch.nn as nn
    import torch.nn.modules as nn_modules
    import torch.nn.modules.rnn as nn_rnn
    from torch.testing._internal import common_modules

    import fusedrnn

    originals = {name: getattr(nn, name) for name in RNN_CLASSES}
    for name in RNN_CLASSES:
        for namespace in (nn, nn_modules, nn_rnn):
            setattr(namespace, name, getattr(fusedrnn, name))
    for info in common_modules.module_db:
        for name, cls in originals.items():
            if info.module_cls is cls:
                keep = info.name  # e.g. "nn.LSTM": the generated test names stay torch.nn's
                info.module_cls = getattr(fusedrnn, name)
                info.__class__ = type(type(info).__name__, (type(info),),
                                      {"name": property(lambda self, keep=keep: keep)})
    return fusedrnn


_outcomes = {}
_messages = {}
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "failed": 2}


def pytest_configure(config):
    if os.environ.get(_ENV_SWAP) == "1":
        fusedrnn = swap_in_fusedrnn()
        print(f"torch_rnn_suite: torch.nn's RNN classes replaced by fusedrnn's "
              f"({os.path.dirname(fusedrnn.__file__)}), backend cpu", file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test (setup, call, teardown) runs under fusedrnn.backend("cpu") when swapped."""
    if os.environ.get(_ENV_SWAP) != "1":
        yield
        return
    import fusedrnn
    with fusedrnn.backend("cpu"):
        yield


def pytest_runtest_logreport(report):
    if report.when != "call" and report.passed:
        return
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "failed"  # an unexpected pass fails
    if _RANK[outcome] >= _RANK.get(_outcomes.get(report.nodeid), -1):
        _outcomes[report.nodeid] = outcome
        if outcome == "failed":
            _messages[report.nodeid] = _error_line(report.longreprtext or "")


def _error_line(text):
    """The exception line of a failure report (its first "E   SomeError: ..." line)."""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    for line in lines:
        if re.match(r"[\w.]*(Error|Exception|Failure|Interrupt)\b", line):
            return line
    return lines[0] if lines else (text.strip().splitlines() or [""])[-1]


def pytest_sessionfinish(session):
    out = os.environ.get(_ENV_OUT)
    if out:
        with open(out, "w") as f:
            json.dump({"outcomes": _outcomes, "messages": _messages}, f)


# ------------------------------------------------------------------------------ the driver
def run_pytest(tests_dir, filename, swap, extra_args, timeout):
    """One pytest process over one file; returns {"outcomes": ..., "messages": ...}."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env["PYTORCH_TESTING_DEVICE_ONLY_FOR"] = "cpu"
    env["PYTORCH_PRINT_REPRO_ON_FAILURE"] = "0"
    env[_ENV_SWAP] = "1" if swap else "0"
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env[_ENV_OUT] = out
    cmd = [sys.executable, "-m", "pytest", filename, "-p", "torch_rnn_suite", "-p",
           "no:cacheprovider", "-q", "-rN", "--tb=short", "-k", SELECTION[filename], *extra_args]
    print(f"  $ {' '.join(cmd)}   [{'fusedrnn' if swap else 'torch.nn'}]", flush=True)
    proc = subprocess.run(cmd, cwd=tests_dir, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    print(f"    {tail[0]}", flush=True)
    try:
        with open(out) as f:
            result = json.load(f)
    except (OSError, ValueError):
        print(proc.stdout[-4000:])
        raise SystemExit(f"pytest did not finish {filename} (exit status {proc.returncode})")
    finally:
        os.unlink(out)
    return result


def counts(outcomes):
    c = {"selected": len(outcomes), "passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
    for o in outcomes.values():
        c[o] += 1
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", required=True, help="folder with test_nn.py and/or test_modules.py")
    ap.add_argument("--files", nargs="*", default=list(SELECTION),
                    help="which of the two files to run (default: those present)")
    ap.add_argument("--baseline", help="reuse the torch.nn run saved by an earlier --save")
    ap.add_argument("--save", help="write both runs' outcomes to this JSON file")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per pytest process")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)

    files = [f for f in args.files if os.path.exists(os.path.join(args.tests, f))]
    if not files:
        raise SystemExit(f"none of {args.files} in {args.tests}")
    import fusedrnn  # noqa: F401  (fail early, and say which build is tested)
    print(f"fusedrnn: {os.path.dirname(sys.modules['fusedrnn'].__file__)}")

    base_saved = {}
    if args.baseline:
        with open(args.baseline) as f:
            base_saved = json.load(f)["torch.nn"]
    runs = {"torch.nn": {}, "fusedrnn": {}}
    for filename in files:
        if filename in base_saved:
            runs["torch.nn"][filename] = base_saved[filename]
        else:
            runs["torch.nn"][filename] = run_pytest(args.tests, filename, False,
                                                    args.pytest_args, args.timeout)
        runs["fusedrnn"][filename] = run_pytest(args.tests, filename, True, args.pytest_args,
                                                args.timeout)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(runs, f, indent=1)

    only_fused = []
    print()
    for filename in files:
        base = runs["torch.nn"][filename]["outcomes"]
        fused = runs["fusedrnn"][filename]["outcomes"]
        print(f"{filename}: torch.nn {counts(base)}")
        print(f"{' ' * len(filename)}  fusedrnn {counts(fused)}")
        for nodeid in sorted(fused):
            if fused[nodeid] == "failed" and base.get(nodeid) == "passed":
                only_fused.append((nodeid, runs["fusedrnn"][filename]["messages"].get(nodeid, "")))
            elif fused[nodeid] == "failed":
                print(f"  fails with both: {nodeid}")
    print(f"\nfusedrnn-only failures: {len(only_fused)}")
    for nodeid, message in only_fused:
        print(f"  {nodeid}\n      {message[:300]}")
    return 1 if only_fused else 0


if __name__ == "__main__":
    sys.exit(main())
