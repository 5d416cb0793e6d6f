"""fusedrnn.convert(model): every torch.nn LSTM/GRU/RNN and cell inside becomes fusedrnn's."""
from torch import nn

from fusedrnn.cells import GRUCell, LSTMCell, RNNCell
from fusedrnn.modules import GRU, LSTM, RNN

_MAP = {nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN, nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell,
        nn.RNNCell: RNNCell}


def convert(model: nn.Module) -> nn.Module:
    """Replaces, in place, every torch.nn.LSTM/GRU/RNN/LSTMCell/GRUCell/RNNCell in `model`
    (and `model` itself if it is one) by the fusedrnn module of the same class name.

    The modules keep their parameter objects, buffers, hooks, device, dtype and training mode,
    so optimizers created before the conversion keep working. Returns `model`.

    Saving: a whole converted model saved with torch.save(model) holds fusedrnn's classes, so
    code that loads it with torch.load(..., weights_only=True) and allow-lists torch.nn's RNN
    classes must allow-list fusedrnn's instead (nothing else of fusedrnn is needed)::

        torch.serialization.add_safe_globals([fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.RNN,
                                              fusedrnn.LSTMCell, fusedrnn.GRUCell,
                                              fusedrnn.RNNCell])

    (or those classes in a ``with torch.serialization.safe_globals([...]):`` block). A
    state_dict needs nothing: its keys are torch.nn's.
    """
    for m in model.modules():
        target = _MAP.get(type(m))  # exact types: a subclass may override forward
        if target is not None:
            m.__class__ = target  # no state to add: GRU's reset_after defaults to torch.nn's cell
    return model
