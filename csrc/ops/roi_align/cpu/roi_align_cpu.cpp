// RoIAlign CPU entry points: checks, layout choice, buffers; the kernels are in
// roi_align_cpu_kernel.cpp (per CPU capability). Also the element-by-element test ops.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "common/checks.h"
#include "common/cpu_capability.h"
#include "common/large_tensors.h"
#include "ops/roi_align/cpu/roi_align_cpu_kernel.h"
#include "ops/roi_align/roi_align_host.h"

namespace msrcnn::roi_align {
namespace {

// Vectorised: the fast kernels. ByElement: the CUDA element bodies, one after another.
enum class Engine { Vectorised, ByElement };

// The CPU kernels read the features through rois[:, 0]: reject indices outside the batch.
void check_batch_indices(const at::Tensor& rois, int64_t batch, const char* op) {
  AT_DISPATCH_FLOATING_TYPES(rois.scalar_type(), "check_batch_indices", [&] {
    const scalar_t* data = rois.const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < rois.size(0); ++k) {
      TORCH_CHECK_VALUE(
          batch_of_roi(data + k * 5, batch) >= 0, op, ": rois[", k, ", 0] = ", data[k * 5],
          " is not a batch index of the input (batch size ", batch, ")");
    }
  });
}

// Samples the kernels visit for one RoI on a height x width map, over all its bins: those
// on the map (samples_on_axis), however large the grid.
template <typename T>
double visited_samples(const T* roi, T scale, const PoolParams& pool, int64_t height, int64_t width) {
  const RoIBins<T> bins = roi_bins(roi, scale, pool);
  double rows = 0;
  for (int64_t ph = 0; ph < pool.pooled_height; ++ph) {
    const SampleRange r = samples_on_axis(bins.start_h, ph, bins.bin_h, bins.grid_h, height);
    rows += r.end - r.begin;
  }
  double columns = 0;
  for (int64_t pw = 0; pw < pool.pooled_width; ++pw) {
    const SampleRange r = samples_on_axis(bins.start_w, pw, bins.bin_w, bins.grid_w, width);
    columns += r.end - r.begin;
  }
  return rows * columns;  // bin (ph, pw) visits rows(ph) * columns(pw)
}

// Backward, per NCHW level: whether to accumulate into NHWC gradient buffers (converted
// after). The NHWC loops are ~4x faster per sample and channel (channels vectorised, each
// tap one contiguous run); converting costs about as much as one NCHW sample per map
// element (measured on a 2-core AMD EPYC, AVX2, for FPN maps with 256 channels: NCHW 2-4 ns,
// NHWC 0.5-0.9 ns per sample and channel, 1.9 ns per element converted). So a level is
// converted when its RoIs visit more samples than it has elements.
std::vector<bool> levels_worth_nhwc(const at::Tensor& rois, const RoIAlignParams& params, int64_t batch,
                                    at::IntArrayRef heights, at::IntArrayRef widths) {
  constexpr double kSamplesPerElementBreakEven = 1.0;
  std::vector<double> samples(heights.size(), 0.0);
  AT_DISPATCH_FLOATING_TYPES(rois.scalar_type(), "roi_align_levels_worth_nhwc", [&] {
    const LevelTable<scalar_t> mapping = make_level_mapping<scalar_t>(params);
    const scalar_t* data = rois.const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < rois.size(0); ++k) {
      const int level = level_of_box(data + k * 5 + 1, mapping);
      if (level >= 0) {
        samples[level] +=
            visited_samples(data + k * 5, mapping.scale[level], params.pool, heights[level], widths[level]);
      }
    }
  });
  std::vector<bool> worth(heights.size());
  for (size_t i = 0; i < heights.size(); ++i) {
    const double elements = static_cast<double>(batch) * heights[i] * widths[i];
    worth[i] = samples[i] > kSamplesPerElementBreakEven * elements;
  }
  return worth;
}

// `t` in `format` (NCHW or NHWC) and `dtype`, through the tiled copy where it applies.
at::Tensor to_layout(const at::Tensor& t, at::MemoryFormat format, std::optional<at::ScalarType> dtype = std::nullopt) {
  const at::ScalarType type = dtype.value_or(t.scalar_type());
  if (t.is_contiguous(format) && type == t.scalar_type()) {
    return t;
  }
  const bool dense = t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!dense) {
    return t.to(type, false, false, format);
  }
  at::Tensor out = empty_large(t.sizes(), t.options().dtype(type), format);
  MSRCNN_CPU_DISPATCH(::msrcnn::roi_align, copy_layout, t, out);
  return out;
}

void forward_by_element(at::TensorList maps, const at::Tensor& rois, const RoIAlignParams& params, at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "roi_align_by_element", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_forward_args<scalar_t, T>(maps, rois, params);
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < output.numel(); ++i) {
      out[i] = static_cast<scalar_t>(forward_element(i, args));
    }
  });
}

struct PlainAdd {
  template <typename T>
  void operator()(T* address, T value) const {
    *address += value;
  }
};

void backward_by_element(
    const at::Tensor& grad, const at::Tensor& rois, const RoIAlignParams& params, at::TensorList buffers) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_by_element", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto args = make_backward_args<scalar_t, T>(grad, rois, buffers, params);
    for (int64_t i = 0; i < grad.numel(); ++i) {
      backward_element(i, args, PlainAdd{});
    }
  });
}

// The [K, C, pooled_height, pooled_width] output. One too large to allocate is a ValueError
// naming output_size: on the CPU that is a bad argument, not a transient shortage (the CUDA
// entry point leaves torch.OutOfMemoryError to its caller).
at::Tensor allocate_output(at::TensorList features, const at::Tensor& rois, const PoolParams& pool, const char* op) {
  const at::Tensor& first = features[0];
  try {
    return empty_large({rois.size(0), first.size(1), pool.pooled_height, pool.pooled_width}, first.options());
  } catch (const c10::Error& e) {
    C10_THROW_ERROR(
        ValueError,
        c10::str(
            op, ": output_size (", pool.pooled_height, ", ", pool.pooled_width, ") is too large: an output of ",
            rois.size(0), " RoIs x ", first.size(1), " channels x output_size could not be allocated (",
            e.what_without_backtrace(), ")"));
  }
}

template <Engine engine>
at::Tensor forward_cpu(at::TensorList features, const at::Tensor& rois, const RoIAlignParams& params, const char* op) {
  check_forward_args(features, rois, params, op);
  check_device_type(features[0], c10::DeviceType::CPU, op, "input");
  const at::Tensor rois_acc = rois.to(accumulate_type(features[0].scalar_type())).contiguous();
  check_batch_indices(rois_acc, features[0].size(0), op);
  // First the output: one too large fails here at once, before any work.
  at::Tensor output = allocate_output(features, rois, params.pool, op);
  if (output.numel() == 0) {
    return output;
  }
  // Both engines read the maps as given: the element-by-element engine mirrors the CUDA
  // kernels; the vectorised kernels run NHWC levels channel-vectorised and NCHW levels
  // channel-major (converting an NCHW level first cost more than it saved: 1000 RoIs on a
  // 256 x 200 x 272 map, 2-core AVX2 EPYC: 29 ms to convert + 39 ms NHWC, 55 ms NCHW).
  std::vector<at::Tensor> maps(features.begin(), features.end());
  if (engine == Engine::ByElement) {
    forward_by_element(maps, rois_acc, params, output);
  } else {
    MSRCNN_CPU_DISPATCH(::msrcnn::roi_align, forward_kernel, maps, rois_acc, params, output);
  }
  return output;
}

template <Engine engine>
std::vector<at::Tensor> backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const RoIAlignParams& params,
    int64_t batch_size,
    int64_t channels,
    at::IntArrayRef heights,
    at::IntArrayRef widths,
    bool channels_last,
    const char* op) {
  check_backward_args(grad, rois, params, batch_size, channels, heights, widths, op);
  check_device_type(grad, c10::DeviceType::CPU, op, "grad");
  const at::ScalarType acc_type = accumulate_type(grad.scalar_type());
  const at::Tensor rois_acc = rois.to(acc_type).contiguous();
  check_batch_indices(rois_acc, batch_size, op);
  const auto requested = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  std::vector<bool> nhwc(heights.size(), channels_last);
  if (engine == Engine::Vectorised && !channels_last && channels > 1) {
    nhwc = levels_worth_nhwc(rois_acc, params, batch_size, heights, widths);
  }
  // The accumulation buffers (the maps' gradients) in reused blocks, zeroed: fresh ones, in
  // 4 KiB pages, made MultiScaleRoIAlign forward + backward (4 FPN levels of 800x1088) 87 -> 74
  // ms at 1000 RoIs 7x7 NCHW and 51 -> 41 ms at 100 RoIs 14x14 (fresh huge pages: 14% slower).
  std::vector<at::Tensor> buffers;
  for (size_t i = 0; i < heights.size(); ++i) {
    buffers.push_back(empty_large({batch_size, channels, heights[i], widths[i]}, grad.options().dtype(acc_type),
                                  nhwc[i] ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous)
                          .zero_());
  }
  if (grad.numel() > 0) {
    if (engine == Engine::ByElement) {
      backward_by_element(grad, rois_acc, params, buffers);
    } else {
      MSRCNN_CPU_DISPATCH(::msrcnn::roi_align, backward_kernel, grad, rois_acc, params, buffers);
    }
  }
  for (at::Tensor& buffer : buffers) {
    buffer = to_layout(buffer, requested, grad.scalar_type());
  }
  return buffers;
}

}  // namespace

TORCH_LIBRARY_IMPL(msrcnn, CPU, m) {
  m.impl("roi_align", &roi_align_op<forward_cpu<Engine::Vectorised>>);
  m.impl("_roi_align_backward", &roi_align_backward_op<backward_cpu<Engine::Vectorised>>);
  m.impl("multi_level_roi_align", &multi_level_roi_align_op<forward_cpu<Engine::Vectorised>>);
  m.impl("_multi_level_roi_align_backward", &multi_level_roi_align_backward_op<backward_cpu<Engine::Vectorised>>);
}

TORCH_LIBRARY_IMPL(msrcnn_testing, CPU, m) {
  m.impl("multi_level_roi_align_by_element", &multi_level_roi_align_op<forward_cpu<Engine::ByElement>>);
  m.impl(
      "multi_level_roi_align_backward_by_element",
      &multi_level_roi_align_backward_op<backward_cpu<Engine::ByElement>>);
}

}  // namespace msrcnn::roi_align
