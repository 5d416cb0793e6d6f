"""A short demo: fusedrnn.LSTM against torch.nn.LSTM with the same weights on the same input,
same outputs, and the time of each (forward, and forward + backward).

    python -m fusedrnn.demo [--T 50] [--B 32] [--H 256] [--device cpu|cuda] [--repeat 5]
"""
import argparse
import statistics
import time

import torch

import fusedrnn


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--T", type=int, default=50, help="sequence length")
    p.add_argument("--B", type=int, default=32, help="batch size")
    p.add_argument("--H", type=int, default=256, help="input and hidden size")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5, help="timed runs (median reported)")
    a = p.parse_args(argv)
    device = torch.device(a.device)

    torch.manual_seed(0)
    ref = torch.nn.LSTM(a.H, a.H).to(device)
    ours = fusedrnn.LSTM(a.H, a.H).to(device)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(a.T, a.B, a.H, device=device)

    with torch.no_grad():
        y_ref, (h_ref, c_ref) = ref(x)
        y, (h, c) = ours(x)
    diff = max((y - y_ref).abs().max().item(), (h - h_ref).abs().max().item(),
               (c - c_ref).abs().max().item())
    same = diff < 1e-4
    print(f"fusedrnn {fusedrnn.__version__}, torch {torch.__version__}, device {device}, "
          f"build {fusedrnn.build_info()}")
    print(f"LSTM T={a.T} B={a.B} I=H={a.H} fp32: max |fusedrnn - torch.nn| = {diff:.2e} "
          f"({'same outputs' if same else 'OUTPUTS DIFFER'})")

    def fwd(m):
        def run():
            with torch.no_grad():
                m(x)
        return run

    def train(m):
        def run():
            out, _ = m(x)
            out.sum().backward()
        return run

    print(f"{'':24}{'torch.nn':>12}{'fusedrnn':>12}{'speed-up':>10}")
    for label, make in (("forward (inference)", fwd), ("forward + backward", train)):
        t_ref = _median_time(make(ref), device, a.repeat)
        t_ours = _median_time(make(ours), device, a.repeat)
        print(f"{label:24}{t_ref * 1e3:10.2f}ms{t_ours * 1e3:10.2f}ms{t_ref / t_ours:9.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
