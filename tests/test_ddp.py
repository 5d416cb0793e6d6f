"""DistributedDataParallel (gloo, two processes on this machine): the gradients of a fusedrnn
model equal those of one process that sees the whole batch."""
import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fusedrnn


def build():
    torch.manual_seed(0)
    return fusedrnn.LSTM(5, 7, num_layers=2, bidirectional=True).double()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 4, 5, generator=g, dtype=torch.float64)


def loss_of(model, x):
    out, (h, c) = model(x)
    return out.square().mean() + h.sum() * 0.1


def worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(build())
        x = data()[:, rank * 2:(rank + 1) * 2]  # this process's half of the batch
        loss_of(model, x).backward()
        grads = [p.grad for p in model.module.parameters()]
        torch.save(grads, os.path.join(out_dir, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_single_process():
    model = build()
    x = data()
    # DDP averages the per-process gradients; the loss is a mean over each half of the batch,
    # so the single-process equivalent is the mean of the two halves' losses.
    loss = (loss_of(model, x[:, :2]) + loss_of(model, x[:, 2:])) / 2
    expected = torch.autograd.grad(loss, list(model.parameters()))
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(worker, args=(2, free_port(), d), nprocs=2, join=True)
        for rank in range(2):
            grads = torch.load(os.path.join(d, f"grads{rank}.pt"))
            assert len(grads) == len(expected)
            for a, b in zip(grads, expected):
                torch.testing.assert_close(a, b)
