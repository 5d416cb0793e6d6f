"""A character-level language model on fusedrnn.LSTM: embedding -> LSTM -> linear head.

Trained with truncated backpropagation through time: the text is cut into `--batch` contiguous
streams, each read in chunks of `--seq-len` characters; the LSTM state is carried from one chunk
to the next (detached, so gradients stop at the chunk boundary) and gradients are clipped to
`--clip`. By default it trains on fusedrnn's own sources (csrc/**/*.{h,cpp,cuh,cu} and
fusedrnn/*.py, read from the checkout at run time, nothing downloaded), prints the loss per
epoch and samples text from the model at the end.

    python examples/char_lstm.py                         # fusedrnn.LSTM on fusedrnn's sources
    python examples/char_lstm.py --impl torch            # the same model on torch.nn.LSTM
    python examples/char_lstm.py --cell gru_reset_before # on Cho's GRU (fusedrnn.GRU(reset_after=False))
    python examples/char_lstm.py --cell mut3             # on MUT3 (fusedrnn.MUT3; also mut1, mut2)
    python examples/char_lstm.py --cell layer_norm_lstm  # on fusedrnn.LayerNormLSTM (or _gru)
    python examples/char_lstm.py --text my.txt --epochs 20 --hidden 512 --layers 3
    python examples/char_lstm.py --temperature 0.5 --sample-len 1000 --prime "int main"
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

try:
    import fusedrnn
except ModuleNotFoundError:  # not installed: use the checkout this example lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import fusedrnn
from fusedrnn.bench import ProgressBar

SOURCE_PATTERNS = ("*.h", "*.cpp", "*.cuh", "*.cu")


def default_corpus():
    """fusedrnn's C++/CUDA sources (csrc/, when the checkout has it) and Python sources, each
    preceded by a line naming the file. Returns (text, [paths])."""
    pkg = Path(fusedrnn.__file__).resolve().parent
    csrc = pkg.parent / "csrc"
    files = []
    if csrc.is_dir():
        files += sorted({p for pat in SOURCE_PATTERNS for p in csrc.rglob(pat)})
    files += sorted(pkg.glob("*.py"))
    if not files:
        raise SystemExit(f"char_lstm: no sources found under {pkg.parent}; use --text FILE")
    parts = []
    for p in files:
        rel = p.relative_to(pkg.parent)
        mark = "#" if p.suffix == ".py" else "//"
        parts.append(f"{mark} ==== {rel} ====\n{p.read_text(encoding='utf-8', errors='replace')}")
    return "\n".join(parts), files


class Vocab:
    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        return torch.tensor([self.index[c] for c in text if c in self.index], dtype=torch.long)

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


# --cell: the recurrent layer. gru_reset_before is Cho et al.'s GRU (fusedrnn.GRU with
# reset_after=False), mut1-3 Jozefowicz et al.'s cells (fusedrnn.MUT1-3), layer_norm_lstm and
# layer_norm_gru Ba et al.'s (fusedrnn.LayerNormLSTM/GRU): torch.nn has none of them.
CELLS = ("lstm", "gru", "gru_reset_before", "mut1", "mut2", "mut3", "layer_norm_lstm",
         "layer_norm_gru")
FUSEDRNN_ONLY = CELLS[2:]


class CharLSTM(nn.Module):
    def __init__(self, vocab_size, embed, hidden, layers, dropout=0.0, impl="fusedrnn",
                 cell="lstm"):
        super().__init__()
        lib = fusedrnn if impl == "fusedrnn" else nn
        kw = dict(num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        if cell in FUSEDRNN_ONLY and impl != "fusedrnn":
            raise SystemExit(f"char_lstm: torch.nn has no {cell} cell; use --impl fusedrnn")
        if cell in ("mut1", "mut2"):
            embed = hidden  # x enters a gate as is: input size == hidden size
        self.embed = nn.Embedding(vocab_size, embed)
        if cell.startswith("mut"):
            self.lstm = getattr(fusedrnn, cell.upper())(embed, hidden, **kw)
        elif cell.startswith("layer_norm"):
            kind = fusedrnn.LayerNormLSTM if cell == "layer_norm_lstm" else fusedrnn.LayerNormGRU
            self.lstm = kind(embed, hidden, **kw)
        else:
            if cell == "gru_reset_before":
                kw["reset_after"] = False
            self.lstm = (lib.LSTM if cell == "lstm" else lib.GRU)(embed, hidden, **kw)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        """x [B, T] character ids -> logits [B, T, V], state ((h, c), or h for a GRU)."""
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


def streams(data, batch):
    """The text as `batch` contiguous streams [batch, L] (the tail that does not fit is cut)."""
    L = len(data) // batch
    if L < 2:
        raise SystemExit(f"char_lstm: text of {len(data)} characters is too short for "
                         f"--batch {batch}")
    return data[:batch * L].view(batch, L)


def chunks(s, seq_len):
    """(input, target) chunks of at most seq_len steps, in order, along the streams."""
    L = s.size(1)
    for i in range(0, L - 1, seq_len):
        n = min(seq_len, L - 1 - i)
        yield s[:, i:i + n], s[:, i + 1:i + 1 + n]


def detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(t.detach() for t in state)


def train_epoch(model, opt, data, args, device, bar=None):
    """One pass of truncated BPTT over the streams. Returns the per-step losses."""
    model.train()
    state, losses = None, []
    loss_fn = nn.CrossEntropyLoss()
    for step, (x, y) in enumerate(chunks(data, args.seq_len)):
        if args.max_steps and step >= args.max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits, state = model(x, state)
        state = detach(state)            # carry the state, cut the graph at the chunk edge
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1, f"loss {losses[-1]:.3f}")
    return losses


@torch.no_grad()
def evaluate(model, data, args, device):
    """Mean loss over the held-out streams, state carried across chunks."""
    model.eval()
    state, total, count = None, 0.0, 0
    for x, y in chunks(data, args.seq_len):
        x, y = x.to(device), y.to(device)
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                             reduction="sum").item()
        count += y.numel()
    return total / max(1, count)


@torch.no_grad()
def sample(model, vocab, prime, length, temperature, device, generator=None):
    """`length` characters generated after `prime`, one at a time (temperature 0: greedy)."""
    model.eval()
    ids = vocab.encode(prime)
    if ids.numel() == 0:
        ids = torch.tensor([0])
    logits, state = model(ids.view(1, -1).to(device))
    out = []
    for _ in range(length):
        last = logits[0, -1].float()
        if temperature <= 0:
            nxt = int(last.argmax())
        else:
            probs = torch.softmax(last / temperature, dim=-1).cpu()
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]], device=device), state)
    return vocab.decode(out)


def build_parser():
    p = argparse.ArgumentParser(prog="python examples/char_lstm.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", metavar="FILE", default=None,
                   help="train on this UTF-8 text file (default: fusedrnn's own sources)")
    p.add_argument("--impl", choices=("fusedrnn", "torch"), default="fusedrnn",
                   help="LSTM implementation: fusedrnn.LSTM (default) or torch.nn.LSTM")
    p.add_argument("--cell", choices=CELLS, default="lstm",
                   help="the recurrent layer: lstm (default), gru, gru_reset_before (Cho's "
                        "GRU), mut1/mut2/mut3 (Jozefowicz et al.; mut1 and mut2 embed into "
                        "--hidden features), layer_norm_lstm or layer_norm_gru (Ba et al.); the "
                        "last six fusedrnn only")
    p.add_argument("--epochs", type=int, default=5, help="passes over the text (default 5)")
    p.add_argument("--seq-len", type=int, default=100,
                   help="characters per chunk: the truncated-BPTT length (default 100)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams (default 32)")
    p.add_argument("--embed", type=int, default=64, help="embedding size (default 64)")
    p.add_argument("--hidden", type=int, default=256, help="LSTM hidden size (default 256)")
    p.add_argument("--layers", type=int, default=2, help="LSTM layers (default 2)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout between LSTM layers (default 0)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--clip", type=float, default=1.0,
                   help="gradient-norm clipping threshold (default 1.0)")
    p.add_argument("--val-frac", type=float, default=0.05,
                   help="fraction of the text held out for a validation loss (default 0.05; "
                        "0 for none)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop each epoch after this many steps (default 0: whole text)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, ... (default: cuda if available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sample-len", type=int, default=400,
                   help="characters to sample at the end (default 400; 0 for none)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature; lower is more conservative, 0 greedy "
                        "(default 0.8)")
    p.add_argument("--prime", default=None,
                   help="text the sample starts from (default: the corpus' first line)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    return p


def main(argv=None):
    """Trains, prints, and returns a dict: losses (mean train loss per epoch), step_losses,
    val_losses, final_loss, sample, seconds, chars_per_s, impl, vocab_size."""
    args = build_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    if args.text:
        text = Path(args.text).read_text(encoding="utf-8", errors="replace")
        what = args.text
    else:
        text, files = default_corpus()
        what = f"fusedrnn's sources ({len(files)} files)"
    vocab = Vocab(text)
    data = vocab.encode(text)
    n_val = int(len(data) * args.val_frac)
    if n_val < 2 * args.batch + 2:
        n_val = 0
    train_data = streams(data[:len(data) - n_val], args.batch)
    val_data = streams(data[len(data) - n_val:], args.batch) if n_val else None

    model = CharLSTM(len(vocab), args.embed, args.hidden, args.layers, args.dropout,
                     args.impl, args.cell).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    steps = math.ceil((train_data.size(1) - 1) / args.seq_len)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    print(f"{what}: {len(text):,} characters, vocabulary {len(vocab)}; "
          f"{type(model.lstm).__module__}.{type(model.lstm).__name__}"
          f"{' (reset_after=False)' if args.cell == 'gru_reset_before' else ''} "
          f"{args.layers}x{args.hidden}, "
          f"{n_params:,} parameters, device {device}; {steps} steps of "
          f"{args.batch}x{args.seq_len} per epoch")

    step_losses, losses, val_losses, seconds, trained = [], [], [], 0.0, 0
    enabled = {"on": True, "off": False}.get(args.progress)
    for epoch in range(1, args.epochs + 1):
        bar = ProgressBar(steps, f"epoch {epoch}/{args.epochs}", enabled=enabled)
        t0 = time.perf_counter()
        ep = train_epoch(model, opt, train_data, args, device, bar)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        bar.close()
        seconds += dt
        trained += len(ep) * args.batch * args.seq_len
        step_losses += ep
        losses.append(sum(ep) / len(ep))
        line = (f"epoch {epoch}/{args.epochs}  loss {losses[-1]:.4f} "
                f"({losses[-1] / math.log(2):.3f} bits/char)")
        if val_data is not None:
            val_losses.append(evaluate(model, val_data, args, device))
            line += f"  val {val_losses[-1]:.4f}"
        print(line + f"  {dt:.1f} s, {len(ep) * args.batch * args.seq_len / dt:,.0f} chars/s")

    result = dict(impl=args.impl, cell=args.cell, losses=losses, step_losses=step_losses,
                  val_losses=val_losses, final_loss=losses[-1] if losses else float("nan"),
                  seconds=seconds, chars_per_s=trained / seconds if seconds else 0.0,
                  vocab_size=len(vocab), sample="")
    print(f"trained {trained:,} characters in {seconds:.1f} s with {args.impl} "
          f"({result['chars_per_s']:,.0f} chars/s)")
    if args.sample_len > 0:
        prime = args.prime if args.prime is not None else text.split("\n", 1)[0] + "\n"
        result["sample"] = sample(model, vocab, prime, args.sample_len, args.temperature,
                                  device, gen)
        print(f"--- sample (temperature {args.temperature}) ---\n{prime}{result['sample']}\n---")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
