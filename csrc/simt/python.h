// Python bindings of the SIMT layer (configuration and the self-test kernels), added to
// fusedrnn._C by csrc/fusedrnn.cpp.
#pragma once

#include <torch/extension.h>

namespace fusedrnn {
bool simt_built();
namespace simt {
void bind_python(pybind11::module& m);
}  // namespace simt
}  // namespace fusedrnn
