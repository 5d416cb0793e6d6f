"""examples/char_lstm.py: tiny runs of the character-level LSTM example through its main()."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "char_lstm.py"


@pytest.fixture(scope="module")
def char_lstm():
    spec = importlib.util.spec_from_file_location("char_lstm", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY = ["--epochs", "1", "--seq-len", "12", "--batch", "4", "--embed", "8", "--hidden", "16",
        "--layers", "2", "--progress", "off"]


@pytest.fixture
def repetitive(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("the cat sat. " * 200)
    return str(path)


def test_short_run_on_the_default_corpus(char_lstm, capsys):
    r = char_lstm.main(TINY + ["--max-steps", "3", "--sample-len", "20"])
    assert r["impl"] == "fusedrnn"
    assert len(r["losses"]) == 1 and len(r["step_losses"]) == 3
    assert math.isfinite(r["final_loss"]) and r["final_loss"] > 0
    assert all(math.isfinite(v) for v in r["val_losses"])
    out = capsys.readouterr().out
    assert "fusedrnn.modules.LSTM" in out and "epoch 1/1  loss" in out and "--- sample" in out


def test_default_corpus_is_the_packages_own_sources(char_lstm):
    text, files = char_lstm.default_corpus()
    names = {p.name for p in files}
    assert "modules.py" in names and "bench.py" in names
    assert any(p.suffix in (".cpp", ".h") for p in files)   # csrc/ of the checkout
    pkg = Path(char_lstm.fusedrnn.__file__).parent
    assert (pkg / "modules.py").read_text() in text            # read at run time, verbatim
    assert "// ==== csrc/" in text


def test_loss_goes_down_on_a_repetitive_text(char_lstm, repetitive):
    r = char_lstm.main(TINY + ["--text", repetitive, "--max-steps", "30", "--lr", "1e-2",
                               "--layers", "1", "--val-frac", "0", "--sample-len", "0"])
    first, last = r["step_losses"][0], r["step_losses"][-5:]
    assert len(r["step_losses"]) == 30
    assert max(last) < 0.6 * first, r["step_losses"]


def test_impl_torch_runs_the_same_model(char_lstm, repetitive, capsys):
    args = TINY + ["--text", repetitive, "--max-steps", "3", "--val-frac", "0",
                   "--sample-len", "5"]
    ours = char_lstm.main(args)
    ref = char_lstm.main(args + ["--impl", "torch"])
    assert ref["impl"] == "torch"
    assert "torch.nn.modules.rnn.LSTM" in capsys.readouterr().out
    assert all(math.isfinite(v) for v in ref["step_losses"])
    # same seed, same initial weights, same batches: the same losses up to rounding
    assert ref["step_losses"] == pytest.approx(ours["step_losses"], rel=1e-4)


@pytest.mark.parametrize("temperature", ["0.8", "0"])
def test_sample_has_the_requested_length(char_lstm, repetitive, temperature):
    r = char_lstm.main(TINY + ["--text", repetitive, "--max-steps", "2", "--val-frac", "0",
                               "--sample-len", "37", "--temperature", temperature,
                               "--prime", "the "])
    assert len(r["sample"]) == 37
    assert set(r["sample"]) <= set("the cat sat. ")


def test_chunks_cover_the_streams_in_order(char_lstm):
    data = torch.arange(103)
    s = char_lstm.streams(data, 4)                   # 4 streams of 25, 3 cut
    assert s.shape == (4, 25) and s[1, 0] == 25
    xs, ys = zip(*char_lstm.chunks(s, 10))
    assert [x.size(1) for x in xs] == [10, 10, 4]    # the last chunk is shorter
    assert torch.equal(torch.cat(xs, 1), s[:, :-1])  # consecutive, nothing skipped
    assert torch.equal(torch.cat(ys, 1), s[:, 1:])   # targets: the next character


def test_state_is_carried_across_chunks_and_detached(char_lstm, repetitive, monkeypatch):
    seen, returned = [], []
    forward = char_lstm.CharLSTM.forward

    def spy(self, x, state=None):
        if self.training:
            seen.append(state)
        out = forward(self, x, state)
        if self.training:
            returned.append(out[1])
        return out
    monkeypatch.setattr(char_lstm.CharLSTM, "forward", spy)
    char_lstm.main(TINY + ["--text", repetitive, "--max-steps", "4", "--val-frac", "0",
                           "--sample-len", "0"])
    assert len(seen) == 4 and seen[0] is None
    for prev, state in zip(returned, seen[1:]):
        assert state is not None
        assert all(not t.requires_grad for t in state)                 # detached
        assert all(torch.equal(a, b) for a, b in zip(state, prev))     # the previous chunk's


@pytest.mark.parametrize("cell", ["gru", "gru_reset_before", "mut1", "mut2", "mut3",
                                  "layer_norm_lstm", "layer_norm_gru"])
def test_other_cells_learn(char_lstm, repetitive, cell, capsys):
    """--cell: the GRU, Cho's reset-before GRU, MUT1-3 and the layer-normalised LSTM and GRU
    train the same model (loss falls on a repetitive text); torch.nn has none but the GRU, which
    --impl torch says."""
    r = char_lstm.main(TINY + ["--text", repetitive, "--cell", cell, "--epochs", "2",
                               "--sample-len", "0", "--lr", "1e-2"])
    assert r["cell"] == cell
    assert r["step_losses"][-1] < r["step_losses"][0] * 0.8
    out = capsys.readouterr().out
    if cell == "gru_reset_before":
        assert "reset_after=False" in out
    if cell != "gru":
        assert {"mut1": "MUT1", "mut3": "MUT3", "layer_norm_lstm": "LayerNormLSTM",
                "layer_norm_gru": "LayerNormGRU"}.get(
            cell, "") in out
        with pytest.raises(SystemExit, match=f"torch.nn has no {cell} cell"):
            char_lstm.main(TINY + ["--text", repetitive, "--cell", cell, "--impl", "torch"])
