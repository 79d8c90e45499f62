#!/usr/bin/env bash
# One-call check of the CUDA side (and of the AVX-512 CPU build) on a machine with one CUDA GPU.
#
#   make gpu-check                # = tools/gpu_check.sh; the report: out/gpu-check.md
#   tools/gpu_check.sh            # logs under $OUT (the device tool's folder) or out/gpu-check,
#                                 # the report at $REPORT (default out/gpu-check.md)
#
# Builds the extension in place with FORCE_CUDA=1 for this GPU's arch, then runs three groups at
# once on disjoint CPU cores:
#   gpu:  every `cuda`-marked test (each op's CUDA kernel against its CPU kernel, the Triton
#         conv kernels compiled), then every `cuda`-marked benchmark;
#   cpu:  tests/ops, tests/kernels and tests/test_build.py on the CPU (the best CPU build this
#         machine runs, AVX-512 where it has it), with pytest-xdist if installed;
#   ab:   the CPU benchmarks on 2 cores (this project's machine size), file by file, once per
#         CPU build (MSRCNN_CPU_CAPABILITY=avx2, and avx512 where the CPU has it), alternating.
# The gpu group ends with 50 iterations of the demo config on the GPU with AMP (on a 100-image
# shapes set) and their evaluation. tools/gpu_check_report.py then writes every figure into the
# report (markdown). Without a GPU it says so in one line and exits 0. Each step has a time cap,
# so that the whole stays under 10 minutes on a 16-core machine. SKIP_BUILD=1 uses the
# extension already built; CHECK_GROUPS="gpu" runs only the named groups; CUDA_TESTS_CAP /
# CUDA_BENCH_CAP / DEMO_CAP (seconds; 0 skips) cap the gpu group's three steps.
set -u
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no CUDA GPU on this machine; nothing to check."
    exit 0
fi
OUT=${OUT:-out/gpu-check}
REPORT=${REPORT:-out/gpu-check.md}
mkdir -p "$OUT"
rm -f "$OUT"/rows_*.jsonl "$OUT"/steps.txt
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/steps.txt"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then # packages the machine lacks (pycocotools)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    lscpu | grep -E 'Model name|^CPU\(s\)|Thread'
    echo "avx512: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    $PY -c "import sys, torch, torchvision, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torchvision.__version__, triton.__version__)"
} 2>&1 | tee "$OUT/info.txt"

# The system compiler, whose libstdc++ the process loads: a toolchain that links its own libstdc++
# statically into the extension (/opt/gcc on the lent H100 and H200 machines, 2026-11-26, which
# also set CXX to it) gives a second, uninitialised copy, and the first error message formatted
# in C++ crashes the process. CHECK_CXX=path keeps another compiler.
if [ -n "${CHECK_CXX:-}" ]; then
    export CXX=$CHECK_CXX
elif [ -x /usr/bin/g++ ]; then
    export CXX=/usr/bin/g++ CC=/usr/bin/gcc
fi
ARCH=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$ARCH MAX_JOBS=$(nproc)
[ -d /usr/local/cuda ] && export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
stamp "build (sm_${ARCH/./}, $MAX_JOBS jobs)"
if [ -n "${SKIP_BUILD:-}" ]; then
    :
elif ! timeout 300 $PY -m pip install -v --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
    stamp "build FAILED"
    grep -E 'error|Error' "$OUT/build.log" | head -40
    tail -20 "$OUT/build.log"
    $PY tools/gpu_check_report.py "$OUT" "$REPORT"
    exit 1
fi
stamp "built"
$PY -c "import msrcnn_fast; print(msrcnn_fast.build_info())" 2>&1 | tee -a "$OUT/info.txt"
$PY tools/check_kernels.py cuda 2>&1 | tail -3 | tee -a "$OUT/info.txt"
# A C++ argument check must reach Python as an exception (a crash here fails every bad-input test).
THROW='import torch, msrcnn_fast; torch.ops.msrcnn.nms(torch.zeros(3, 3), torch.zeros(3), 0.5, 0.0)'
timeout 60 $PY -c "$THROW" 2>&1 | tail -1 | tee -a "$OUT/info.txt"
if [ "${PIPESTATUS[0]}" -gt 128 ]; then
    echo "a C++ exception crashes the process; its backtrace:" | tee -a "$OUT/info.txt"
    GDB=$(command -v cuda-gdb || echo /usr/local/cuda/bin/cuda-gdb)
    timeout 40 "$GDB" -batch -ex run -ex bt --args $PY -c "$THROW" 2>&1 | grep -E '^#' | head -40 | tee -a "$OUT/info.txt"
    ldd msrcnn_fast/_C*.so | grep -E 'gomp|stdc|gcc_s' | tee -a "$OUT/info.txt"
    (command -v g++; g++ --version | head -1; ls /usr/bin/g++* 2>&1) | tee -a "$OUT/info.txt"
fi

XDIST="" PER_TEST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n 6"
$PY -c "import pytest_timeout" 2>/dev/null && PER_TEST="--timeout 60"
NCPU=$(nproc)
AB_CORES=0-1 GPU_CORES=${GPU_CORES:-2-3} TEST_CORES=4-$((NCPU - 1))
if [ "$NCPU" -lt 8 ]; then # a small machine: the groups share its cores
    AB_CORES=0-$((NCPU - 1)) GPU_CORES=$AB_CORES TEST_CORES=$AB_CORES
fi
PYTEST="$PY -m pytest -p no:cacheprovider -q -rfE"

gpu_group() { # a cap of 0 skips that step
    if [ "${CUDA_TESTS_CAP:-150}" != 0 ]; then
        # -v: a line per test as it ends; SIGINT at the cap, so that pytest still prints the
        # reasons of the failures so far (a plain kill loses them); Triton's autotuning of the
        # conv3x3 tests takes tens of seconds per shape, hence the longer per-test limit.
        timeout -s INT -k 30 ${CUDA_TESTS_CAP:-150} taskset -c $GPU_CORES $PY -m pytest -p no:cacheprovider -v -rfE \
            --tb=short ${XDIST:+-n ${CUDA_TEST_WORKERS:-3}} ${PER_TEST:+--timeout 150} -m cuda tests >"$OUT/cuda_tests.log" 2>&1
        stamp "cuda tests: rc=$? $(tail -1 "$OUT/cuda_tests.log")"
    fi
    if [ "${CUDA_BENCH_CAP:-150}" != 0 ]; then
        MSRCNN_BENCH_ROWS="$OUT/rows_cuda.jsonl" timeout -s INT -k 30 ${CUDA_BENCH_CAP:-150} taskset -c $GPU_CORES \
            $PYTEST -m cuda benchmarks >"$OUT/cuda_bench.log" 2>&1
        stamp "cuda benchmarks: rc=$? $(tail -1 "$OUT/cuda_bench.log")"
    fi
    if [ "${DEMO_CAP:-120}" != 0 ]; then
        rm -rf "$OUT/demo50"
        timeout -s INT -k 20 ${DEMO_CAP:-120} taskset -c $GPU_CORES $PY -m msrcnn_fast.demo --no-progress \
            --config configs/shapes_demo.yaml device=cuda solver.amp=true solver.max_iter=50 solver.log_period=5 \
            solver.checkpoint_period=0 data.root="$OUT/shapes" data.shapes.train=100 data.shapes.val=50 \
            output_dir="$OUT/demo50" >"$OUT/demo50.log" 2>&1
        stamp "demo, 50 iterations with AMP on the GPU, and its evaluation: rc=$?"
    fi
}

cpu_group() {
    local cap rc
    cap=$($PY -c 'from msrcnn_fast import _C; print(_C.max_cpu_capability())')
    OMP_NUM_THREADS=2 timeout 240 taskset -c $TEST_CORES $PYTEST $XDIST -m "not cuda" \
        tests/ops tests/kernels tests/test_build.py >"$OUT/cpu_tests.log" 2>&1
    rc=$?
    stamp "cpu tests, $cap build: rc=$rc $(tail -1 "$OUT/cpu_tests.log")"
}

ab_group() { # file by file, the two builds alternating, so that a time cap loses one file at most
    local caps="avx2"
    grep -q avx512bw /proc/cpuinfo && caps="avx2 avx512"
    for bench in roi_align conv3x3 nms mask_ops; do
        for cap in $caps; do
            MSRCNN_BENCH_ROWS="$OUT/rows_cpu_$cap.jsonl" MSRCNN_CPU_CAPABILITY=$cap OMP_NUM_THREADS=2 timeout 120 \
                taskset -c $AB_CORES $PYTEST -m "not cuda" benchmarks/test_bench_$bench.py >>"$OUT/cpu_bench_$cap.log" 2>&1
            stamp "cpu benchmark $bench, $cap build: rc=$? $(tail -1 "$OUT/cpu_bench_$cap.log")"
        done
    done
}

for group in ${CHECK_GROUPS-gpu cpu ab}; do # CHECK_GROUPS="": build and check only
    ${group}_group &
done
wait
stamp "done"
for f in cuda_tests cuda_bench cpu_tests; do
    [ -f "$OUT/$f.log" ] || continue
    echo "== $f: failures"
    grep -E '^(FAILED|ERROR)' "$OUT/$f.log" | head -15
done
[ -f "$OUT/cuda_bench.log" ] && echo "== cuda benchmarks" &&
    sed -n '/msrcnn_fast against the baseline/,$p' "$OUT/cuda_bench.log" | head -40
for cap in avx2 avx512; do
    [ -f "$OUT/cpu_bench_$cap.log" ] || continue
    echo "== cpu benchmarks, $cap build, 2 cores"
    grep -E ' (MISSED|ok|\(no target\))$' "$OUT/cpu_bench_$cap.log"
done
$PY tools/gpu_check_report.py "$OUT" "$REPORT"
