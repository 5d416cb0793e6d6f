"""Differentiable one-layer, one-direction RNN layers over a whole sequence.

Each function runs the fused forward op and, in backward, the fused backward op, on the backend
selected by `fusedrnn.backend(...)` (and, for LSTM and GRU on the CUDA kernels, the algorithm of
`fusedrnn.algorithm(...)`) at forward time. Shapes (G = 4 LSTM, 3 GRU, 1 RNN):
x [T,B,I]; h0, c0 [B,H]; w_ih [G*H,I]; w_hh [G*H,H]; b_ih, b_hh [G*H] or None (both or neither).
Outputs: y [T,B,H] in time order (also when reverse=True), h_n [B,H] (and c_n [B,H] for LSTM).
Packed input: pass batch_sizes (PackedSequence.batch_sizes, int64 on the CPU); x is then the
packed data [N,I] and y is [N,H] in the same packed order; B = batch_sizes[0]; each sequence
stops at its own length (and, with reverse=True, starts at its own end).
The same signatures as fusedrnn.reference, which computes the same thing one step at a time.
"""
import torch
from torch.autograd.function import once_differentiable

from fusedrnn._config import get_algorithm, get_backend
from fusedrnn._ops import ops

__all__ = ["lstm_layer", "gru_layer", "rnn_layer", "LSTMFunction", "GRUFunction", "RNNFunction"]


def _bias_grads(has_bias, db_ih, db_hh):
    return (db_ih, db_hh) if has_bias else (None, None)


class LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes, w_hr,
                algorithm):
        y, h_n, c_n, gates, cells = ops.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse,
                                                     backend, batch_sizes, w_hr, algorithm)
        ctx.algorithm = algorithm
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, y, gates, cells, w_hr)
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        return y, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, y, gates, cells, w_hr = ctx.saved_tensors
        dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr = ops.lstm_backward(
            dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(), x, h0, c0, w_ih, w_hh, y,
            gates, cells, ctx.reverse, ctx.backend, ctx.batch_sizes, w_hr, ctx.algorithm)
        return (dx, dh0, dc0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db, db), None, None, None,
                dw_hr if w_hr is not None else None, None)


class GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend, batch_sizes, algorithm):
        y, h_n, gates, ghn = ops.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, backend,
                                             batch_sizes, algorithm)
        ctx.algorithm = algorithm
        ctx.save_for_backward(x, h0, w_ih, w_hh, y, gates, ghn)
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        return y, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y, gates, ghn = ctx.saved_tensors
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = ops.gru_backward(
            dy.contiguous(), dh_n.contiguous(), x, h0, w_ih, w_hh, y, gates, ghn, ctx.reverse,
            ctx.backend, ctx.batch_sizes, ctx.algorithm)
        return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db_ih, db_hh), None, None,
                None, None)


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, backend, batch_sizes):
        y, h_n = ops.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, backend,
                                 batch_sizes)
        ctx.save_for_backward(x, h0, w_ih, w_hh, y)
        ctx.has_bias, ctx.reverse, ctx.backend = b_ih is not None, reverse, backend
        ctx.batch_sizes = batch_sizes
        ctx.nonlinearity = nonlinearity
        return y, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y = ctx.saved_tensors
        dx, dh0, dw_ih, dw_hh, db = ops.rnn_backward(
            dy.contiguous(), dh_n.contiguous(), x, h0, w_ih, w_hh, y, ctx.nonlinearity,
            ctx.reverse, ctx.backend, ctx.batch_sizes)
        return (dx, dh0, dw_ih, dw_hh, *_bias_grads(ctx.has_bias, db, db), None, None, None,
                None)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None,
               w_hr=None):
    """One LSTM layer over x [T,B,I] (or packed [N,I]): returns (y, h_n [B,P], c_n [B,H]).

    w_hr [P,H] is torch.nn's projection (proj_size = P): h_t = (o * tanh(c_t)) W_hr^T, w_hh is
    then [4H,P] and y, h0, h_n have P features. Without it P = H."""
    return LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, get_backend(),
                              batch_sizes, w_hr, get_algorithm())


def gru_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, batch_sizes=None):
    """One GRU layer (reset-after, as torch.nn.GRU) over x: returns (y, h_n)."""
    return GRUFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, get_backend(), batch_sizes,
                             get_algorithm())


def rnn_layer(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False,
              batch_sizes=None):
    """One Elman RNN layer (tanh or relu) over x: returns (y, h_n)."""
    return RNNFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, get_backend(),
                             batch_sizes)
