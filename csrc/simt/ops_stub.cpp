// TEMPORARY placeholder until the CUDA kernels run through the SIMT layer (issue 4).
#include "ops.h"

namespace fusedrnn {
namespace simt {
#define NOT_BUILT TORCH_CHECK(false, "fusedrnn: the SIMT backend is not built yet")
T5 lstm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const OptTensor&, const OptTensor&, bool) { NOT_BUILT; }
T6 lstm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                 const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                 const Tensor&, bool) { NOT_BUILT; }
T4 gru_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
               const OptTensor&, bool) { NOT_BUILT; }
T6 gru_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool) { NOT_BUILT; }
T2 rnn_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
               const OptTensor&, bool, bool) { NOT_BUILT; }
T5 rnn_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const Tensor&, const Tensor&, bool, bool) { NOT_BUILT; }
}  // namespace simt
}  // namespace fusedrnn
