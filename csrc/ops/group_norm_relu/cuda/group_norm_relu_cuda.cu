// group_norm_relu CUDA kernels over channels-last float32 copies of the inputs: the statistics
// one block per (image, group), shifted by the group's first value and summed in double; the
// backward's per-channel sums one block per (image, channel); the element bodies in
// group_norm_relu_math.h, one thread per element. The small per-group and per-channel
// combinations are ATen ops on the device.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "ops/group_norm_relu/group_norm_relu_host.h"
#include "common/cuda/launch.cuh"
#include "ops/group_norm_relu/group_norm_relu_math.h"

namespace msrcnn::group_norm_relu {
namespace {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

// Sum of `value` over the block's threads (blockDim.x == kThreadsPerBlock), in thread 0.
__device__ double block_sum(double value, double* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreadsPerBlock / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      shared[threadIdx.x] += shared[threadIdx.x + half];
    }
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

// mean and rstd of group blockIdx.x (= n * groups + g): rows x per_group elements.
__global__ void statistics_kernel(const float* x, int64_t rows, int64_t channels, int64_t groups, double eps,
                                  float* mean, float* rstd) {
  __shared__ double shared[kThreadsPerBlock];
  const int64_t n = blockIdx.x / groups, g = blockIdx.x % groups, per_group = channels / groups;
  const float* xn = x + n * rows * channels + g * per_group;
  const double shift = xn[0];
  double sum = 0.0, squares = 0.0;
  for (int64_t e = threadIdx.x; e < rows * per_group; e += blockDim.x) {
    const double d = static_cast<double>(xn[(e / per_group) * channels + e % per_group]) - shift;
    sum += d;
    squares += d * d;
  }
  sum = block_sum(sum, shared);
  squares = block_sum(squares, shared);
  if (threadIdx.x == 0) {
    const double count = static_cast<double>(rows * per_group);
    const double m = sum / count;
    const double variance = squares / count - m * m;
    mean[blockIdx.x] = static_cast<float>(shift + m);
    rstd[blockIdx.x] = static_cast<float>(1.0 / sqrt((variance > 0.0 ? variance : 0.0) + eps));
  }
}

__global__ void forward_kernel(int64_t total, const float* x, const float* mean, const float* rstd, const float* w,
                               const float* b, int64_t rows, int64_t channels, int64_t groups, bool relu, float* y) {
  const int64_t per_group = channels / groups;
  for (int64_t i = first_index(); i < total; i += index_stride()) {
    const int64_t c = i % channels, n = i / (rows * channels);
    const int64_t s = n * groups + c / per_group;
    y[i] = normalized<float>(x[i], mean[s], rstd[s], w[c], b[c], relu);
  }
}

// sums[n, c] = sum over rows of g', centered[n, c] = sum of g' (x - mean): block per (n, c).
__global__ void channel_sums_kernel(const float* dy, const float* x, const float* y, const float* mean, int64_t rows,
                                    int64_t channels, int64_t groups, bool relu, float* sums, float* centered) {
  __shared__ double shared[kThreadsPerBlock];
  const int64_t n = blockIdx.x / channels, c = blockIdx.x % channels;
  const float m = mean[n * groups + c / (channels / groups)];
  double s = 0.0, p = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t i = (n * rows + r) * channels + c;
    const double g = masked_grad<float>(dy[i], y[i], relu);
    s += g;
    p += g * (static_cast<double>(x[i]) - m);
  }
  s = block_sum(s, shared);
  p = block_sum(p, shared);
  if (threadIdx.x == 0) {
    sums[blockIdx.x] = static_cast<float>(s);
    centered[blockIdx.x] = static_cast<float>(p);
  }
}

__global__ void input_grad_kernel(int64_t total, const float* dy, const float* x, const float* y, const float* mean,
                                  const float* rstd, const float* w, const float* m1, const float* m2, int64_t rows,
                                  int64_t channels, int64_t groups, bool relu, float* dx) {
  const int64_t per_group = channels / groups;
  for (int64_t i = first_index(); i < total; i += index_stride()) {
    const int64_t c = i % channels, n = i / (rows * channels);
    const int64_t s = n * groups + c / per_group;
    dx[i] = input_grad<float>(masked_grad<float>(dy[i], y[i], relu), x[i], mean[s], rstd[s], w[c], m1[s], m2[s]);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_relu_cuda(const at::Tensor& input, int64_t num_groups,
                                                                    const std::optional<at::Tensor>& weight,
                                                                    const std::optional<at::Tensor>& bias,
                                                                    double eps, bool relu) {
  check_forward_args(input, num_groups, weight, bias, eps, c10::DeviceType::CUDA, "msrcnn::group_norm_relu");
  const c10::cuda::CUDAGuard guard(input.device());
  if (input.scalar_type() == at::kDouble) {
    return aten_forward(input, num_groups, weight, bias, eps, relu);
  }
  const int64_t images = input.size(0), channels = input.size(1), rows = input.size(2) * input.size(3);
  at::Tensor mean = at::zeros({images, num_groups}, input.options().dtype(at::kFloat));
  at::Tensor rstd = at::full({images, num_groups}, 1.0 / std::sqrt(eps), input.options().dtype(at::kFloat));
  const at::Tensor x = float_channels_last(input);
  at::Tensor y = at::empty(x.sizes(), x.options(), kChannelsLast);
  if (x.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const at::Tensor w = float_parameter(weight, channels, 1.0f, input);
    const at::Tensor b = float_parameter(bias, channels, 0.0f, input);
    statistics_kernel<<<images * num_groups, kThreadsPerBlock, 0, stream>>>(
        x.const_data_ptr<float>(), rows, channels, num_groups, eps, mean.mutable_data_ptr<float>(),
        rstd.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    forward_kernel<<<grid_size(x.numel()), kThreadsPerBlock, 0, stream>>>(
        x.numel(), x.const_data_ptr<float>(), mean.const_data_ptr<float>(), rstd.const_data_ptr<float>(),
        w.const_data_ptr<float>(), b.const_data_ptr<float>(), rows, channels, num_groups, relu,
        y.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {y.to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/false, kChannelsLast), mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_relu_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& output, const at::Tensor& mean,
    const at::Tensor& rstd, const std::optional<at::Tensor>& weight, int64_t num_groups, bool relu) {
  check_backward_args(grad, input, output, mean, rstd, weight, num_groups, c10::DeviceType::CUDA,
                      "msrcnn::_group_norm_relu_backward");
  const c10::cuda::CUDAGuard guard(input.device());
  if (input.scalar_type() == at::kDouble) {
    return aten_backward(grad, input, output, mean, rstd, weight, num_groups, relu);
  }
  const int64_t images = input.size(0), channels = input.size(1), rows = input.size(2) * input.size(3);
  const at::Tensor x = float_channels_last(input);
  at::Tensor dx = at::empty(x.sizes(), x.options(), kChannelsLast);
  at::Tensor dw = at::zeros({channels}, x.options());
  at::Tensor db = at::zeros({channels}, x.options());
  if (x.numel() == 0) {
    return {dx.to(input.scalar_type()), dw.to(input.scalar_type()), db.to(input.scalar_type())};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // Without the ReLU the kernels do not read the output (its mask): no copy of it.
  const at::Tensor dy = float_channels_last(grad), y = relu ? float_channels_last(output) : x;
  const at::Tensor m = mean.to(at::kFloat).contiguous(), r = rstd.to(at::kFloat).contiguous();
  const at::Tensor w = float_parameter(weight, channels, 1.0f, input);
  at::Tensor sums = at::empty({images, channels}, x.options());
  at::Tensor centered = at::empty({images, channels}, x.options());
  channel_sums_kernel<<<images * channels, kThreadsPerBlock, 0, stream>>>(
      dy.const_data_ptr<float>(), x.const_data_ptr<float>(), y.const_data_ptr<float>(), m.const_data_ptr<float>(),
      rows, channels, num_groups, relu, sums.mutable_data_ptr<float>(), centered.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const double count = static_cast<double>(rows * (channels / num_groups));
  const at::Tensor r_per_channel = r.repeat_interleave(channels / num_groups, 1);  // [N, C]
  const at::Tensor m1 = sums.mul(w).view({images, num_groups, -1}).sum(-1).div(count).contiguous();
  const at::Tensor m2 = centered.mul(w).view({images, num_groups, -1}).sum(-1).mul(r).div(count).contiguous();
  dw.copy_(centered.mul(r_per_channel).sum(0));
  db.copy_(sums.sum(0));
  input_grad_kernel<<<grid_size(x.numel()), kThreadsPerBlock, 0, stream>>>(
      x.numel(), dy.const_data_ptr<float>(), x.const_data_ptr<float>(), y.const_data_ptr<float>(),
      m.const_data_ptr<float>(), r.const_data_ptr<float>(), w.const_data_ptr<float>(), m1.const_data_ptr<float>(),
      m2.const_data_ptr<float>(), rows, channels, num_groups, relu, dx.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto dtype = input.scalar_type();
  return {dx.to(dtype, /*non_blocking=*/false, /*copy=*/false, kChannelsLast), dw.to(dtype), db.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CUDA, m) {
  m.impl("group_norm_relu", &group_norm_relu_cuda);
  m.impl("_group_norm_relu_backward", &group_norm_relu_backward_cuda);
}

}  // namespace msrcnn::group_norm_relu
