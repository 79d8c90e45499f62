#include "common/cuda/build_info_cuda.h"

#include <cuda_runtime_api.h>

#include <sstream>

#include "common/macros.h"

namespace msrcnn {

std::string cuda_build_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

std::vector<std::string> cuda_build_archs() {
  // nvcc defines __CUDA_ARCH_LIST__ as the comma-separated virtual architectures compiled.
  std::vector<std::string> archs;
  std::stringstream list(MSRCNN_STRINGIFY(__CUDA_ARCH_LIST__));
  std::string arch;
  while (std::getline(list, arch, ',')) {
    const int value = std::stoi(arch);
    archs.push_back("sm_" + std::to_string(value / 10));
  }
#ifdef MSRCNN_CUDA_PTX_ARCH
  // setup.py: the newest arch of TORCH_CUDA_ARCH_LIST marked +PTX, whose PTX newer GPUs JIT-compile.
  archs.push_back("compute_" + std::to_string(MSRCNN_CUDA_PTX_ARCH) + " (PTX)");
#endif
  return archs;
}

}  // namespace msrcnn
