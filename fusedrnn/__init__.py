"""fusedrnn: fused CUDA/C++ kernels for LSTM, GRU and Elman RNN, drop-in for torch.nn.

    import fusedrnn
    lstm = fusedrnn.LSTM(512, 512)          # same arguments as torch.nn.LSTM
    with fusedrnn.backend("simt"): ...      # run the CUDA kernels on CPU threads (testing)
    with fusedrnn.algorithm("persistent"): ...  # whole sequence in one launch, W_hh on chip
"""
from fusedrnn import _ops  # noqa: F401  (loads fusedrnn._C; raises an ImportError naming the fix)
from fusedrnn import functional, reference
from fusedrnn._config import algorithm, backend, get_algorithm, get_backend
from fusedrnn.cells import GRUCell, LSTMCell, RNNCell
from fusedrnn.convert import convert
from fusedrnn.layer_norm import LayerNormGRU, LayerNormGRUCell, LayerNormLSTM, LayerNormLSTMCell
from fusedrnn.modules import GRU, LSTM, RNN
from fusedrnn.mut import MUT1, MUT2, MUT3, MUT1Cell, MUT2Cell, MUT3Cell

__version__ = "0.1.0"
__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "MUT1", "MUT2", "MUT3",
           "MUT1Cell", "MUT2Cell", "MUT3Cell", "LayerNormLSTM", "LayerNormLSTMCell", "LayerNormGRU",
           "LayerNormGRUCell", "convert", "functional", "reference", "backend", "get_backend",
           "algorithm", "get_algorithm", "build_info"]


def build_info() -> dict:
    """How this copy was built: torch version, whether CUDA kernels were compiled, for which
    archs, and whether the SIMT layer is built."""
    return dict(_ops._C.build_info())
