"""benchmarks/gpu_check.py, the report half of scripts/gpu_check.sh, run end to end on the CPU
with tiny sizes (--device cpu): the same case loop, checks, profiler kernel tables and report
writing that a GPU run uses, so the script is known to work before the first GPU comes."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_check  # noqa: E402


def test_report_on_cpu(tmp_path, capsys):
    rc = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--budget", "60",
                         "--no-static", "--repeat", "2"])
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0, out
    assert doc["results"] and all(r["status"] == "ok" for r in doc["results"]), doc["results"]
    assert {r["cell"] for r in doc["results"]} == {"lstm", "gru", "rnn"}
    assert all(r["check"]["ok"] and r["ratio"] > 0 for r in doc["results"])
    assert "torch.backends.cudnn.allow_tf32" in doc["versions"]["tf32"]
    # Kernel tables of one call each: the CPU run lists the ops (a GPU run lists kernels).
    tables = [t for t in doc["kernels"].values() if "error" not in t]
    assert tables and all(t["torch"] and t["fusedrnn"] for t in tables), doc["kernels"]
    assert any(k.startswith("fusedrnn::") for t in tables for k, _, _ in t["fusedrnn"])
    md = (tmp_path / "report.md").read_text()
    assert "## Benchmark" in md and "## Kernels of one call" in md
    # The persistent forward timed on one cluster and on the grid (through the SIMT layer here).
    assert "one cluster vs the grid" in md
    assert doc["cluster"] and all(r["cluster_us"] > 0 and r["grid_us"] > 0 and r["barrier_us"] > 0
                                  and "error" not in r for r in doc["cluster"]), doc["cluster"]
    assert "| grid barrier |" in md
    # A stack's layers as wavefront launches against one at a time (SIMT here).
    assert "wavefront launches vs one layer at a time" in md
    assert doc["wavefront"] and all(r["wave_us"] > 0 and r["layers_us"] > 0 and "error" not in r
                                    for r in doc["wavefront"]), doc["wavefront"]
    # One more step's time from two sequence lengths (SIMT here), with the model beside.
    assert doc["per_step"] and all("error" not in r and r["model_us"] > 0 and r["fused_us"] != 0
                                   and r["stepwise_us"] != 0 for r in doc["per_step"]), \
        doc["per_step"]
    assert {r["mode"] for r in doc["per_step"]} == {"inference", "training"}
    assert "One more step" in md
    # Where a persistent step's time goes: every phase of every case measured (SIMT: ns).
    assert doc["phases"] and all("error" not in r and r["blocks"] > 1 and r["step_cycles"] > 0
                                 and set(r["cycles"]) == set(gpu_check.PHASES)
                                 and all(v >= 0 for v in r["cycles"].values())
                                 for r in doc["phases"]), doc["phases"]
    assert "Where a persistent forward step goes" in md
    # ... and the grid forward with its flag words and with a grid barrier a step: the wait
    # shows as "barrier" only with the barrier (the flag words' wait is in "tile")
    grid = {r["case"]: r["cycles"] for r in doc["phases"] if r["case"].endswith("grid)")}
    bar = {r["case"]: r["cycles"] for r in doc["phases"] if r["case"].endswith("barrier)")}
    assert len(grid) == len(bar) == 1, doc["phases"]
    # (SIMT ns: a grid barrier waits for every block's fibers, ~1e5; two marks back to back, ~1e1)
    (b,), (g,) = bar.values(), grid.values()
    assert b["barrier"] > 100 * max(1.0, g["barrier"]), doc["phases"]
    assert "| lstm bf16 B=2 H=16 (grid barrier) |" in md
    # The short table comes last on stdout.
    assert out.rstrip().splitlines()[-1].startswith(tuple(r["name"][:20] for r in doc["results"]))
    # --table-only prints it again from report.json (what gpu_check.sh shows of a run stopped at
    # its limit: the report is saved after every case).
    assert gpu_check.main(["--out", str(tmp_path), "--table-only"]) == 0
    again = capsys.readouterr().out.rstrip().splitlines()
    assert again == out.rstrip().splitlines()[-len(again):] and len(again) == len(doc["results"]) + 2


def test_resume_takes_over_measured_cases(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    gpu_check.main(["--out", str(first), "--device", "cpu", "--budget", "60", "--no-static",
                    "--repeat", "2"])
    doc1 = json.loads((first / "report.json").read_text())
    # one case of the earlier run failed: it is run again, the others are taken over
    doc1["results"][0]["status"] = "ERROR"
    (first / "report.json").write_text(json.dumps(doc1))
    gpu_check.main(["--out", str(second), "--device", "cpu", "--budget", "60", "--no-static",
                    "--repeat", "2", "--resume", str(first / "report.json")])
    doc2 = json.loads((second / "report.json").read_text())
    assert [r["name"] for r in doc2["results"]] == [r["name"] for r in doc1["results"]]
    assert "run" not in doc2["results"][0] and doc2["results"][0]["status"] == "ok"
    assert all(r.get("run") == "earlier" for r in doc2["results"][1:])


def test_budget_lists_what_did_not_run(tmp_path, capsys):
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--budget", "0", "--no-static"])
    doc = json.loads((tmp_path / "report.json").read_text())
    assert not doc["results"] and doc["not_run"]
    assert "not run for lack of time" in capsys.readouterr().out


def test_shell_script_parses():
    r = subprocess.run(["bash", "-n", os.path.join(ROOT, "scripts", "gpu_check.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_smoke_check_on_cpu(tmp_path, capsys):
    """--smoke GROUP runs that group's persistent forward paths once each against the stepwise
    forward (SIMT here), writes smoke-GROUP.json, says last what the rest should use, and the
    report of a later run in the same folder shows both groups."""
    for group, last in (("flags", "exchange: flags"), ("cluster", "cluster: auto")):
        rc = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--smoke", group])
        out = capsys.readouterr().out.rstrip().splitlines()
        rows = json.loads((tmp_path / f"smoke-{group}.json").read_text())
        assert rc == 0 and out[-1] == last, out
        assert [r["path"] for r in rows] == [c[0] for c in gpu_check.SMOKE_CASES[group]]
        assert all(r["ok"] and 0 <= r["err"] <= r["tol"] and r["ms"] > 0 for r in rows), rows
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--budget", "0", "--no-static"])
    md = (tmp_path / "report.md").read_text()
    assert "## Smoke check" in md and md.count("| flags | grid, flag words |") == 3
    assert md.count("| cluster | cluster") == 3
    assert "FUSEDRNN_PERSISTENT_EXCHANGE=flags, FUSEDRNN_PERSISTENT_CLUSTER=auto" in md


@pytest.mark.parametrize("group, last", [("flags", "exchange: barrier"),
                                         ("cluster", "cluster: off")])
def test_smoke_check_falls_back(tmp_path, capsys, monkeypatch, group, last):
    """A case of the group that fails (here a tuning the kernels refuse) makes the smoke check
    name the fallback, and fail; the control case decides nothing."""
    monkeypatch.setitem(gpu_check.SMOKE_CASES, group,
                        [gpu_check.SMOKE_CONTROL, ("broken", "lstm", "bf16", 8, 512, 1, 7)])
    rc = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--smoke", group])
    out = capsys.readouterr().out.rstrip().splitlines()
    rows = json.loads((tmp_path / f"smoke-{group}.json").read_text())
    assert rc == 1 and out[-1] == last, out
    assert rows[0]["ok"] and not rows[1]["ok"] and "flags must be" in rows[1]["error"], rows


def test_cluster_table_skips_what_a_fallback_turned_off(monkeypatch):
    """With a fallback switch set, the cluster-vs-grid table leaves the path it turned off
    untimed instead of timing the fallback under its name (the switches are read by the C++
    side once a process, so the test stands in for them in Python only)."""
    monkeypatch.setattr(gpu_check, "fallback_on", lambda group: True)
    rows = gpu_check.cluster_vs_grid(gpu_check.torch.device("cpu"))
    assert rows and all(r["cluster_us"] is None and r["grid_us"] is None and r["barrier_us"] > 0
                        and "error" not in r for r in rows), rows
    monkeypatch.setattr(gpu_check, "fallback_on", lambda group: group == "flags")
    rows = gpu_check.cluster_vs_grid(gpu_check.torch.device("cpu"))
    assert all(r["cluster_us"] > 0 and r["grid_us"] is None for r in rows), rows
