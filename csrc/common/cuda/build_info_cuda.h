#pragma once

#include <string>
#include <vector>

namespace msrcnn {

// "13.0": the CUDA toolkit the kernels were compiled with.
std::string cuda_build_version();

// ["sm_80", "sm_90"]: the architectures compiled into the kernels.
std::vector<std::string> cuda_build_archs();

}  // namespace msrcnn
