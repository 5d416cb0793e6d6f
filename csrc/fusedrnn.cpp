// The op schemas (TORCH_LIBRARY) and the Python module fusedrnn._C (build information).
// Kernels are registered per dispatch key in csrc/cpu/register.cpp and csrc/cuda/register.cpp.
#include <torch/extension.h>
#include <pybind11/stl.h>

#include "cpu/big_buffer.h"
#include "cpu/bidir_concurrent.h"
#include "simt/python.h"
#include "auto_measured.h"
#include "validate.h"

#ifndef FUSEDRNN_TORCH_VERSION
#define FUSEDRNN_TORCH_VERSION "unknown"
#endif
#ifndef FUSEDRNN_ARCHS
#define FUSEDRNN_ARCHS ""
#endif

TORCH_LIBRARY(fusedrnn, m) {
  // One layer, one direction, the whole sequence. See csrc/ops.h for shapes and saved tensors.
  // batch_sizes (PackedSequence.batch_sizes) makes x and every per-row tensor [N, K] packed.
  // w_hr [P, H] is the LSTM projection (torch.nn's proj_size = P); dw_hr is empty without it.
  // algorithm (LSTM, GRU): the CUDA kernels' "stepwise", "persistent" or "auto".
  // save (LSTM, GRU forward): False returns empty gates / cells / ghn and keeps no per-row
  // buffer but y (inference: nothing will call backward; csrc/ops.h).
  // Both directions of a bidirectional layer (csrc/bidir_ops.h): h0, c0 [2,B,H]; y [T,B,2H],
  // h_n, c_n [2,B,H]; with save, gates and cells (ghn) of both directions [2,T,B,..] (packed
  // [2,N,..]) for the backward op, else empty. Backward: dy [..,2H], dh_n, dc_n [2,B,H]; dx
  // summed over the directions, dh0, dc0 [2,B,H], each direction's weight and bias gradients.
  // One persistent launch each where those kernels run and fit both directions, else the two
  // single-direction ops one after the other.
  m.def(
      "lstm_forward_bidir(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor w_ih_r, Tensor w_hh_r, Tensor? b_ih_r, Tensor? b_hh_r, "
      "str backend='auto', Tensor? batch_sizes=None, str algorithm='auto', bool save=False) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  m.def(
      "gru_forward_bidir(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor w_ih_r, Tensor w_hh_r, Tensor? b_ih_r, Tensor? b_hh_r, "
      "str backend='auto', Tensor? batch_sizes=None, str algorithm='auto', bool save=False) "
      "-> (Tensor y, Tensor h_n, Tensor gates, Tensor ghn)");
  m.def(
      "lstm_backward_bidir(Tensor dy, Tensor dh_n, Tensor dc_n, Tensor x, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor w_ih_r, Tensor w_hh_r, Tensor y, Tensor gates, "
      "Tensor cells, str backend='auto', Tensor? batch_sizes=None, str algorithm='auto') "
      "-> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dw_ih, Tensor dw_hh, Tensor db, "
      "Tensor dw_ih_r, Tensor dw_hh_r, Tensor db_r)");
  m.def(
      "gru_backward_bidir(Tensor dy, Tensor dh_n, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor w_ih_r, Tensor w_hh_r, Tensor y, Tensor gates, Tensor ghn, str backend='auto', "
      "Tensor? batch_sizes=None, str algorithm='auto') "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh, "
      "Tensor dw_ih_r, Tensor dw_hh_r, Tensor db_ih_r, Tensor db_hh_r)");
  // The layers of a unidirectional stack's forward (inference, nothing saved; weights torch.nn's
  // flat list, (w_ih, w_hh[, b_ih, b_hh]) a layer; h0, c0 [L,B,H]; the last layer's y, h_n,
  // c_n [L,B,H]): persistent wavefront launches of up to 4 layers where those kernels run and
  // fit, else a layer at a time (csrc/stack_ops.h).
  m.def(
      "lstm_forward_stack(Tensor x, Tensor h0, Tensor c0, Tensor[] weights, bool has_biases, "
      "str backend='auto', Tensor? batch_sizes=None, str algorithm='auto') "
      "-> (Tensor y, Tensor h_n, Tensor c_n)");
  m.def(
      "gru_forward_stack(Tensor x, Tensor h0, Tensor[] weights, bool has_biases, "
      "str backend='auto', Tensor? batch_sizes=None, str algorithm='auto') "
      "-> (Tensor y, Tensor h_n)");
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, bool reverse=False, str backend='auto', Tensor? batch_sizes=None, "
      "Tensor? w_hr=None, str algorithm='auto', bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  m.def(
      "lstm_backward(Tensor dy, Tensor dh_n, Tensor dc_n, Tensor x, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor y, Tensor gates, Tensor cells, bool reverse=False, "
      "str backend='auto', Tensor? batch_sizes=None, Tensor? w_hr=None, str algorithm='auto') "
      "-> (Tensor dx, Tensor dh0, Tensor dc0, Tensor dw_ih, Tensor dw_hh, Tensor db, "
      "Tensor dw_hr)");
  m.def(
      "gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "bool reverse=False, str backend='auto', Tensor? batch_sizes=None, "
      "str algorithm='auto', bool save=True) -> (Tensor y, Tensor h_n, Tensor gates, Tensor ghn)");
  m.def(
      "gru_backward(Tensor dy, Tensor dh_n, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor y, Tensor gates, Tensor ghn, bool reverse=False, str backend='auto', "
      "Tensor? batch_sizes=None, str algorithm='auto') "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
  // GRU with the reset gate before the recurrent product (Cho et al. 2014): as gru_*, with
  // rh = r * h_{t-1} saved instead of ghn (csrc/cpu/gru_reset_before.h). Stepwise kernels
  // only on CUDA and SIMT (the algorithm has one choice).
  m.def(
      "gru_rb_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "bool reverse=False, str backend='auto', Tensor? batch_sizes=None, bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor gates, Tensor rh)");
  m.def(
      "gru_rb_backward(Tensor dy, Tensor dh_n, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor y, Tensor gates, Tensor rh, bool reverse=False, str backend='auto', "
      "Tensor? batch_sizes=None) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db_ih, Tensor db_hh)");
  // MUT1-3 (Jozefowicz et al. 2015), the recurrent part: xp is the input side of the r, z, n
  // pre-activations, biases included; variant 1, 2 or 3 (csrc/cpu/mut.h). Stepwise kernels
  // only on CUDA and SIMT (the Cho GRU's, with the MUT update).
  m.def(
      "mut_forward(Tensor xp, Tensor h0, Tensor w_hh, int variant, bool reverse=False, "
      "str backend='auto', Tensor? batch_sizes=None, bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor gates, Tensor rh)");
  m.def(
      "mut_backward(Tensor dy, Tensor dh_n, Tensor h0, Tensor w_hh, Tensor y, Tensor gates, "
      "Tensor rh, int variant, bool reverse=False, str backend='auto', "
      "Tensor? batch_sizes=None) -> (Tensor dxp, Tensor dh0, Tensor dw_hh)");
  // The layer-normalised LSTM (Ba et al. 2016), the recurrent part: xp is the input side of
  // the i, f, g, o pre-activations, biases included; gh and stats are in the accumulation type
  // (csrc/layer_norm_ops.h). Stepwise kernels on CUDA and SIMT.
  m.def(
      "ln_lstm_forward(Tensor xp, Tensor h0, Tensor c0, Tensor w_hh, Tensor g_hh, Tensor g_c, "
      "Tensor? b_c, bool reverse=False, str backend='auto', Tensor? batch_sizes=None, "
      "bool save=True) -> (Tensor y, Tensor h_n, Tensor c_n, Tensor gates, Tensor gh, "
      "Tensor cells, Tensor stats)");
  m.def(
      "ln_lstm_backward(Tensor dy, Tensor dh_n, Tensor dc_n, Tensor h0, Tensor c0, Tensor w_hh, "
      "Tensor g_hh, Tensor g_c, Tensor? b_c, Tensor y, Tensor gates, Tensor gh, Tensor cells, "
      "Tensor stats, bool reverse=False, str backend='auto', Tensor? batch_sizes=None) "
      "-> (Tensor dxp, Tensor dh0, Tensor dc0, Tensor dw_hh, Tensor dg_hh, Tensor dg_c, "
      "Tensor db_c)");
  // The layer-normalised GRU (torch.nn.GRU's cell, its recurrent product normalised): as
  // ln_lstm_*, G = 3, no cell state (csrc/layer_norm_ops.h).
  m.def(
      "ln_gru_forward(Tensor xp, Tensor h0, Tensor w_hh, Tensor g_hh, Tensor? b_hh, "
      "bool reverse=False, str backend='auto', Tensor? batch_sizes=None, bool save=True) "
      "-> (Tensor y, Tensor h_n, Tensor gates, Tensor gh, Tensor stats)");
  m.def(
      "ln_gru_backward(Tensor dy, Tensor dh_n, Tensor h0, Tensor w_hh, Tensor g_hh, "
      "Tensor? b_hh, Tensor y, Tensor gates, Tensor gh, Tensor stats, bool reverse=False, "
      "str backend='auto', Tensor? batch_sizes=None) "
      "-> (Tensor dxp, Tensor dh0, Tensor dw_hh, Tensor dg_hh, Tensor db_hh)");
  m.def(
      "rnn_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "str nonlinearity='tanh', bool reverse=False, str backend='auto', Tensor? batch_sizes=None) "
      "-> (Tensor y, Tensor h_n)");
  m.def(
      "rnn_backward(Tensor dy, Tensor dh_n, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor y, str nonlinearity='tanh', bool reverse=False, str backend='auto', Tensor? batch_sizes=None) "
      "-> (Tensor dx, Tensor dh0, Tensor dw_ih, Tensor dw_hh, Tensor db)");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fusedrnn native extension: ops are registered under torch.ops.fusedrnn";
  m.def("build_info", []() {
    pybind11::dict d;
    d["torch"] = FUSEDRNN_TORCH_VERSION;
#ifdef FUSEDRNN_WITH_CUDA
    d["cuda"] = true;
#else
    d["cuda"] = false;
#endif
    std::string archs = FUSEDRNN_ARCHS;
    pybind11::list a;
    size_t start = 0;
    while (start < archs.size()) {
      size_t end = archs.find_first_of(";, ", start);
      if (end == std::string::npos) end = archs.size();
      if (end > start) a.append(archs.substr(start, end - start));
      start = end + 1;
    }
    d["archs"] = a;
    d["simt"] = fusedrnn::simt_built();
    return d;
  });
  m.def("cpu_cache_stats", []() {
    const auto st = fusedrnn::cpu::cache_stats();
    pybind11::dict d;
    d["cached"] = st.cached;
    d["recurring"] = st.recurring;
    d["live"] = st.live;
    d["sizes"] = st.sizes;
    d["peak"] = st.peak;
    d["limit"] = st.limit;
    return d;
  });
  m.def("cpu_reset_peak", []() { fusedrnn::cpu::reset_peak(); });
  // The CUDA dispatch's choice of algorithm (validate.h use_persistent), for tests without a GPU:
  // fits = W_hh fits on chip for the call.
  m.def("_use_persistent", [](const std::string& algorithm, bool fits, int64_t B, bool backward) {
    return fusedrnn::use_persistent("test", fusedrnn::parse_algorithm(algorithm), fits, B,
                                    /*simt=*/false, backward);
  });
  // "auto"'s measured rule for one direction's inference forward on a GPU (auto_measured.h).
  m.def("_auto_inference_persistent", [](const std::string& kind, int64_t B, int64_t H, bool half) {
    TORCH_CHECK(kind == "lstm" || kind == "gru", "kind must be lstm or gru, got ", kind);
    return fusedrnn::persistent_inference_measured(
        kind == "lstm" ? fusedrnn::RnnKind::Lstm : fusedrnn::RnnKind::Gru, B, H, half);
  });
  // The CPU backend's choice for a bidirectional layer (cpu/bidir_concurrent.h) on this pool
  // (tests).
  m.def("_cpu_bidir_concurrent", [](int64_t G, int64_t B, int64_t H, int64_t elem_bytes) {
    return fusedrnn::cpu::bidir_concurrent(G, B, H, elem_bytes, at::get_num_threads());
  });
  fusedrnn::simt::bind_python(m);
}
