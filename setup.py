"""Build of msrcnn_fast's C++/CUDA extension (msrcnn_fast._C).

CPU kernels are always built. CUDA kernels (csrc/**/cuda/*.cu) are added when a GPU is
visible or FORCE_CUDA=1; without a GPU, TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0+PTX" (PTX for newer GPUs).

Hot CPU kernels (csrc/**/cpu/*_kernel.cpp) are compiled once per CPU capability, like
ATen's CPU_CAPABILITY builds: the plain build (namespace DEFAULT, baseline x86-64), an
AVX2+FMA build (namespace AVX2) and an AVX-512 F/BW/VL/DQ build (namespace AVX512); the
extension picks one at run time from the CPU's features. Nothing is compiled for the build
machine's -march. A kernel file whose AVX512 build measured slower than its AVX2 build is
built up to AVX2 only (WIDEST_CAPABILITY).
"""

import glob
import os
import re
import shutil
import sys

import torch
from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")

# Extra builds of the *_kernel.cpp files: name -> compiler flags (ATen's for its builds of the
# same name). The plain build is DEFAULT. Keep them in increasing order: the objects are linked
# in this order, so where several define one inline function, the linker keeps the copy of the
# lowest build that has it, which every CPU able to call it can run.
CPU_CAPABILITIES = {
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2"],
    "AVX512": [
        "-mavx512f",
        "-mavx512bw",
        "-mavx512vl",
        "-mavx512dq",
        "-mfma",
        "-mf16c",
        "-DCPU_CAPABILITY_AVX512",
    ],
}
# GCC 12's AVX-512 intrinsics initialise their "undefined" operand from itself
# (_mm512_undefined_ps), which -Wmaybe-uninitialized reports wherever one is inlined, ATen's
# Vectorized<float> included. So that warning is off in the AVX512 build (GCC only: clang has
# no such option); the DEFAULT and AVX2 builds of the same sources keep it.
GCC_CAPABILITY_FLAGS = {"AVX512": ["-Wno-maybe-uninitialized"]}
# Kernel files built only up to a capability below the widest, because the wider build measured
# slower (their dispatch is MSRCNN_CPU_DISPATCH_UP_TO_AVX2, so an AVX-512 CPU runs their AVX2
# build). Measured on an AVX-512 Intel Xeon (a lent GPU machine's host, 2 cores, 2026-11-26),
# AVX512 build against AVX2 build in one run, torchvision's times unchanged between the two:
# mask_pool_concat's backward over 81 classes 4x slower (GCC turns its window-max scatter into
# 16-lane gathers and scatters; on a 2-core AMD Zen 4, 2026-11-28, in one process alternating:
# forward + backward 1.08-1.39x slower, forward 1.12-1.19x).
# NMS and Soft-NMS (one file) are built for AVX512 and dispatched per kernel: hard NMS 2.1-2.4x
# slower in its AVX512 build on the Xeon and 2.1x on the Zen 4 (80 x 1000 boxes; 5000 boxes:
# equal), so it runs its AVX2 build on both; Soft-NMS 1.15-1.3x slower on the Xeon (the IoU's
# divide costs more per lane in 512-bit registers there) but 0.77-0.81x on the Zen 4 (1000 and
# 5000 boxes, 80 x 1000), so it runs its AVX512 build on AMD CPUs only
# (csrc/common/cpu_capability.h, amd_avx512_in_use).
WIDEST_CAPABILITY = {
    os.path.join("csrc", "ops", "mask_pool_concat", "cpu", "mask_pool_concat_cpu_kernel.cpp"): "AVX2",
}


def _builds_up_to(source, capability):
    """Whether the *_kernel.cpp `source` is compiled for `capability` (see WIDEST_CAPABILITY)."""
    names = list(CPU_CAPABILITIES)
    widest = WIDEST_CAPABILITY.get(source, names[-1])
    return names.index(capability) <= names.index(widest)


def _relative(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _find_cuda_home():
    """CUDA_HOME, else the toolkit that holds the nvcc on PATH, else /usr/local/cuda.

    A toolkit is a folder with bin/nvcc and include/cuda_runtime.h (an nvcc on PATH may be a
    wrapper script outside the toolkit).
    """
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return candidates[-1]


def _nvidia_wheel_include_dirs():
    """Headers the CUDA toolkit may lack (cusparse.h, ...) that torch's CUDA headers include.

    The nvidia-* wheels torch depends on install them under site-packages/nvidia/cu13/include.
    """
    found = []
    for entry in sys.path:
        for sub in ("cu13", "cu12"):
            path = os.path.join(entry, "nvidia", sub, "include")
            if os.path.isdir(path) and path not in found:
                found.append(path)
    return found


def _want_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available()


WITH_CUDA = _want_cuda()
if WITH_CUDA:
    # Before importing cpp_extension, which reads CUDA_HOME once.
    os.environ.setdefault("CUDA_HOME", _find_cuda_home())
    if not torch.cuda.is_available():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

from torch.utils.cpp_extension import (  # noqa: E402
    BuildExtension,
    CppExtension,
    CUDAExtension,
    check_compiler_is_gcc,
    get_cxx_compiler,
)


class BuildExtensionPerCapability(BuildExtension):
    """BuildExtension that also compiles *_kernel.cpp once per extra CPU capability.

    The extra objects are linked after the plain ones, in CPU_CAPABILITIES' order, so where a
    header's inline function is emitted in several, the linker keeps the plain (baseline) copy,
    else the lowest capability's.
    """

    def finalize_options(self):
        super().finalize_options()
        # pip builds in a throw-away folder; keep objects in the repository instead, so that a
        # rebuild (make, pip install -e .) recompiles only what changed.
        if not os.path.abspath(self.build_temp).startswith(ROOT + os.sep):
            self.build_temp = os.path.join(ROOT, "build", "temp-cuda" if WITH_CUDA else "temp-cpu")

    def build_extension(self, ext):
        kernel_sources = getattr(ext, "capability_sources", [])
        if kernel_sources:
            cxx_flags = [f for f in ext.extra_compile_args["cxx"] if not f.startswith("-DCPU_CAPABILITY")]
            gcc = check_compiler_is_gcc(get_cxx_compiler())
            objects = []
            for name, flags in CPU_CAPABILITIES.items():
                if gcc:
                    flags = flags + GCC_CAPABILITY_FLAGS.get(name, [])
                sources = [s for s in kernel_sources if _builds_up_to(s, name)]
                objects += self.compiler.compile(
                    sources,
                    output_dir=os.path.join(self.build_temp, f"capability_{name}"),
                    macros=ext.define_macros,
                    include_dirs=ext.include_dirs,
                    extra_postargs={"cxx": cxx_flags + [f"-DCPU_CAPABILITY={name}"] + flags, "nvcc": []},
                    depends=ext.depends,
                )
            ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


def make_extension():
    cpp_sources = _relative(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    capability_sources = [s for s in cpp_sources if s.endswith("_kernel.cpp")]
    cxx_flags = ["-O3", "-g0", "-fopenmp", "-DCPU_CAPABILITY=DEFAULT", "-Wall", "-Wno-unknown-pragmas"]
    defines = []
    include_dirs = [CSRC]
    kwargs = {}
    if WITH_CUDA:
        include_dirs += _nvidia_wheel_include_dirs()
        sources = cpp_sources + _relative(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
        defines.append(("MSRCNN_WITH_CUDA", None))
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        # The newest arch whose PTX is embedded ("9.0+PTX": newer GPUs JIT-compile it), for
        # build_info() (one value: nvcc splits a -D value at commas).
        arch_list = re.split(r"[;\s]+", os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
        ptx = [round(float(a.removesuffix("+PTX")) * 10) for a in arch_list if a.endswith("+PTX")]
        if ptx:
            nvcc_flags.append(f"-DMSRCNN_CUDA_PTX_ARCH={max(ptx)}")
        extension_cls = CUDAExtension
        kwargs["extra_compile_args"] = {"cxx": cxx_flags, "nvcc": nvcc_flags}
    else:
        sources = cpp_sources
        extension_cls = CppExtension
        kwargs["extra_compile_args"] = {"cxx": cxx_flags}
    ext = extension_cls(
        name="msrcnn_fast._C",
        sources=sources,
        include_dirs=include_dirs,
        define_macros=defines,
        extra_link_args=["-fopenmp"],
        depends=_relative(glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True))
        + _relative(glob.glob(os.path.join(CSRC, "**", "*.cuh"), recursive=True)),
        **kwargs,
    )
    ext.capability_sources = capability_sources
    return ext


setup(
    packages=find_packages(include=["msrcnn_fast", "msrcnn_fast.*"]) + ["msrcnn_fast.kernels"],
    package_dir={"msrcnn_fast.kernels": "kernels"},
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtensionPerCapability.with_options(use_ninja=True)},
)
