// TEMPORARY placeholder until the SIMT layer lands (issue 3).
#include "simt/python.h"

namespace fusedrnn {
bool simt_built() { return false; }
namespace simt {
void bind_python(pybind11::module&) {}
}  // namespace simt
}  // namespace fusedrnn
