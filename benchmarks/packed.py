"""What a packed batch costs relative to the padded batch of the same shape, fusedrnn vs torch.nn.

    python benchmarks/packed.py                       # T=200 B=16 H=128, training, CPU
    python benchmarks/packed.py --T 500 --mode inference --threads 1

Lengths are drawn uniformly from [1, T] (seeded; the longest is set to T so both batches have
the same shape) and packed with enforce_sorted=False. For each implementation the padded batch
(every sequence T steps) and the packed batch are timed alternately in one process; the ratio
packed / padded is what the packing costs or saves. A native implementation computes only the
live rows, so its ratio is about the fraction of live rows; torch.nn's CPU path unpacks and
re-runs per batch-size group, so its ratio is well above 1.
"""
import argparse
import statistics
import time

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedrnn


def run(module, x, train):
    if train:
        module.zero_grad(set_to_none=True)
        out = module(x)[0]
        if isinstance(out, PackedSequence):
            out = out.data
        out.sum().backward()
    else:
        with torch.no_grad():
            module(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), nargs="+", default=["lstm", "gru"])
    p.add_argument("--T", type=int, default=200)
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--H", type=int, default=128)
    p.add_argument("--mode", choices=("training", "inference"), default="training")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    lengths = torch.randint(1, a.T + 1, (a.B,), generator=g)
    lengths[0] = a.T
    x = torch.randn(a.T, a.B, a.H, generator=g)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    train = a.mode == "training"
    print(f"T={a.T} B={a.B} I=H={a.H} {a.mode}, live rows {int(lengths.sum())} of {a.T * a.B}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'case':<18}{'padded ms':>11}{'packed ms':>11}{'packed/padded':>15}")
    for cell in a.cell:
        ref_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        ours_cls = {"lstm": fusedrnn.LSTM, "gru": fusedrnn.GRU, "rnn": fusedrnn.RNN}[cell]
        ref = ref_cls(a.H, a.H)
        ours = ours_cls(a.H, a.H)
        ours.load_state_dict(ref.state_dict())
        for name, m in (("torch.nn", ref), ("fusedrnn", ours)):
            times = {"padded": [], "packed": []}
            for inp in (x, packed):  # warm-up
                run(m, inp, train)
            for _ in range(a.repeat):
                for key, inp in (("padded", x), ("packed", packed)):
                    t0 = time.perf_counter()
                    run(m, inp, train)
                    times[key].append(time.perf_counter() - t0)
            pad = statistics.median(times["padded"]) * 1e3
            pk = statistics.median(times["packed"]) * 1e3
            print(f"{cell + ' ' + name:<18}{pad:>11.2f}{pk:>11.2f}{pk / pad:>14.2f}x")


if __name__ == "__main__":
    main()
