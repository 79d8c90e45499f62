// The extension module msrcnn_fast._C: owns the op namespaces and reports what was built.
// Ops register themselves from csrc/ops/<op>/ (schemas) and their cpu/ and cuda/ folders.

#include <torch/extension.h>

#include <string>
#include <thread>

#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/conv3x3/conv3x3_host.h"
#include "ops/conv3x3/cpu/packed_filter_cache.h"

#ifdef MSRCNN_WITH_CUDA
#include "common/cuda/build_info_cuda.h"
#endif

TORCH_LIBRARY(msrcnn, m) {}
TORCH_LIBRARY(msrcnn_testing, m) {}

namespace {

py::dict build_info() {
  py::dict info;
  py::list backends;
  backends.append("cpu");
#ifdef MSRCNN_WITH_CUDA
  backends.append("cuda");
  info["cuda_version"] = msrcnn::cuda_build_version();
  info["cuda_archs"] = msrcnn::cuda_build_archs();
#else
  info["cuda_version"] = py::none();
  info["cuda_archs"] = py::list();
#endif
  info["backends"] = backends;
  py::list capabilities;
  capabilities.append("default");
  capabilities.append("avx2");
  capabilities.append("avx512");
  info["cpu_capabilities"] = capabilities;
  info["torch_version"] = std::string(TORCH_VERSION);
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "msrcnn_fast C++/CUDA kernels (ops registered under torch.ops.msrcnn)";
  m.def("build_info", &build_info, "Backends, CUDA version and archs, CPU capabilities compiled in.");
  m.def("cpu_capability", [] { return std::string(msrcnn::cpu_capability_name(msrcnn::cpu_capability())); },
        "The CPU capability the kernels use now ('default', 'avx2' or 'avx512').");
  m.def("max_cpu_capability", [] { return std::string(msrcnn::cpu_capability_name(msrcnn::max_cpu_capability())); },
        "The best CPU capability this CPU supports.");
  m.def("bf16_dot_in_use", &msrcnn::bf16_dot_in_use,
        "Whether bfloat16 matrix products are taken for float32 ones (AMD with AVX-512 BF16, capability avx512).");
  m.def("amd_avx512_in_use", &msrcnn::amd_avx512_in_use,
        "Whether kernels whose AVX512 build pays on AMD only (Soft-NMS) take it: an AMD CPU, capability avx512.");
  m.def("_set_winograd_tile", &msrcnn::conv3x3::set_winograd_tile, py::arg("tile"),
        "Forces the CPU conv3x3 kernels' Winograd tile: 2 (F(2x2, 3x3)), 4 (F(4x4, 3x3)), 7 (F(7x7, 3x3)) or 0 (by map size).");
  m.def("_winograd_tile", &msrcnn::conv3x3::forced_winograd_tile, "The forced Winograd tile (0: by map size).");
  m.def(
      "large_block_cache_stats",
      [] {
        const msrcnn::LargeBlockCacheStats s = msrcnn::large_block_cache_stats();
        py::dict d;
        d["cached_bytes"] = s.cached_bytes;
        d["cached_blocks"] = s.cached_blocks;
        d["in_use_bytes"] = s.in_use_bytes;
        d["reused"] = s.reused;
        d["mapped"] = s.mapped;
        d["max_cached_bytes"] = msrcnn::kMaxCachedBytes;
        const msrcnn::conv3x3::PackedFilterCacheStats f = msrcnn::conv3x3::packed_filter_cache_stats();
        d["conv3x3_filters"] = f.entries;
        d["conv3x3_filter_bytes"] = f.bytes;
        d["conv3x3_filter_hits"] = f.hits;
        return d;
      },
      "The large CPU blocks kept for reuse (cached_bytes, cached_blocks, in_use_bytes, reused, mapped, max_cached_bytes) "
      "and conv3x3's filters kept for inference (conv3x3_filters, conv3x3_filter_bytes, conv3x3_filter_hits).");
  m.def(
      "empty_cache",
      [] {
        msrcnn::conv3x3::clear_packed_filter_cache();
        msrcnn::empty_cache();
      },
      "Drops conv3x3's kept filters and unmaps the large CPU blocks kept for reuse.");
  m.def(
      "_hold_cache_locks_for_testing",
      [](double seconds) {
        std::thread filters(msrcnn::conv3x3::hold_packed_filter_cache_for_testing, seconds);
        msrcnn::hold_large_block_cache_for_testing(seconds);
        filters.join();
      },
      py::arg("seconds"), py::call_guard<py::gil_scoped_release>(),
      "Holds the large-block and kept-filter caches' locks for `seconds`, without the GIL (tests of fork()).");
  m.def("set_cpu_capability", &msrcnn::set_cpu_capability, py::arg("name"),
        "Selects the CPU kernels' capability: 'default', 'avx2' or 'avx512' (if the CPU has it).");
}
