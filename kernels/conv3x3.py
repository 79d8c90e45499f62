"""Triton kernels: 3x3 convolution, padding 1, stride 1 or 2, bias and ReLU fused; forward and backward.

Implicit GEMM on channels-last activations, float32 accumulation (float32, float16 and bfloat16
inputs). With ``Ho = (H - 1) // stride + 1``:

- forward ``y = relu?(conv(x, w) + b)`` (ReLU optional): M = N*Ho*Wo output pixels, N = Cout, K = 9*Cin;
- backward input ``dx = conv_transpose(g, w)``: M = input pixels, N = Cin, K = taps*Cout.
  Stride 2 splits the input pixels into 4 parity classes (sub-pixel convolution), each with only
  the 1, 2 or 4 taps that reach it: no masked-out multiply-adds;
- backward weight ``dw = g^T im2col(x)``, ``db = sum(g)``: M = Cout, N = Cin per
  tap, K = N*Ho*Wo pixels, split over ``splits`` programs into float32 partials that are summed in
  a fixed order afterwards (deterministic, no atomics). The bias gradient is reduced by the
  programs of column 0 from the operand they load anyway.

The backward kernels take the gradient of the convolution's output, i.e. the caller applies
the ReLU mask first (``threshold_backward(grad, y, 0)``, one elementwise pass). Masking inside
the kernels instead would load a second operand tile (y) per K step in both kernels and route
the first operand through registers; compiled for sm_90, that took the backward-input kernel
to 255 registers with spills.

Channels: Cin is split into C_MAIN = Cin - Cin % 16 channels, run in full K blocks, and C_TAIL =
Cin % 16 tail channels (the MaskIoU head's 257th input channel, the mask) that run as one
16-wide MMA step per tap. Activations and weights are read from channels-last buffers whose
pixel rows hold C_MAIN + 16 channels, zero beyond Cin (257 -> 272: one copy, which an NCHW input
needs anyway), so every row is 32-byte aligned and no load is masked along K. For Cin = 257 the
tail costs 16/256 = 6 % extra MMA work on that layer, where one masked 64-wide K block per tap
would cost 25 % and leave the 257-channel rows unaligned (unaligned rows cost 30-90 registers
per thread in these kernels, from the compiler's sm_90 register counts). The input gradient
is written with the same padded strides, the weight gradient's partials likewise.

The launchers (``conv3x3_forward``, ``conv3x3_backward_input``, ``conv3x3_backward_weight``) are
the CUDA kernels of the ``msrcnn::conv3x3`` ops (registered in msrcnn_fast/ops/conv3x3.py). They
take tensors on a CUDA device, or CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``:
how the tests run them here), and launch through ``torch.library.wrap_triton`` (a plain launch
in eager mode; traceable where a caller wraps them in a ``triton_op``). Autotuning:
``forward_configs()`` and friends list the configs; ``MSRCNN_TRITON_AUTOTUNE=0`` turns autotuning
off and uses ``default_config(...)``.
"""

import contextlib
import functools
import importlib.util
import os
import sys

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

__all__ = [
    "AUTOTUNE_ENV",
    "H100_SHARED_MEMORY",
    "TAIL_BLOCK",
    "autotune_enabled",
    "backward_input_configs",
    "backward_weight_configs",
    "conv3x3_backward_input",
    "conv3x3_backward_weight",
    "conv3x3_forward",
    "default_config",
    "forward_configs",
    "interpreting",
    "padded_channels",
    "shared_memory_bytes",
    "split_channels",
    "weight_grad_splits",
]

AUTOTUNE_ENV = "MSRCNN_TRITON_AUTOTUNE"
TAIL_BLOCK = 16  # channels per tail MMA step: tl.dot needs K >= 16
_INTERPRETER_SMS = 32  # "SMs" the split-K heuristic assumes under the interpreter: small tests split too


# --------------------------------------------------------------------------------------------
# Kernels. They call Triton builtins only, no @jit functions of triton.language (tl.zeros,
# tl.cdiv, tl.sum): those are compiled-only when Triton was imported without TRITON_INTERPRET,
# and then the interpreted twin (see _interpreted_module) could not call them. Sums are
# tl.reduce with tl.sum's own combine function, which the interpreter runs as one numpy sum.
# --------------------------------------------------------------------------------------------

_sum_combine = tl.standard._sum_combine


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr, DOT_IN_F32: tl.constexpr):
    """acc + a @ b in float32. DOT_IN_F32 (the interpreter with bfloat16, whose numpy dot would
    multiply the raw bits) upcasts the operands first: bfloat16 products are exact in float32,
    so this is the bfloat16 MMA's arithmetic up to the order of the sums."""
    if DOT_IN_F32:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    return acc


@triton.jit(do_not_specialize=["M_BUCKET"])
def _conv3x3_forward_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    M,
    H,
    W,
    HO,
    WO,
    M_BUCKET,  # autotuning key only
    sxn,
    sxh,
    sxw,
    sxc,
    swo,
    swh,
    sww,
    swc,
    syn,
    syh,
    syw,
    syc,
    C_OUT: tl.constexpr,
    C_MAIN: tl.constexpr,
    C_TAIL: tl.constexpr,
    STRIDE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    RELU: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_IN_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # x: [N, Cpad, H, W] and w: [Cout, Cpad, 3, 3], channels-last with Cpad = C_MAIN + 16 when
    # C_TAIL > 0 (channels C_MAIN + C_TAIL .. Cpad are zeros), so no load is masked along K.
    # Programs along N (Cout) are adjacent, so the few that read one activation tile run together.
    pid = tl.program_id(0)
    num_pid_n = (C_OUT + BLOCK_N - 1) // BLOCK_N
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < C_OUT
    img = offs_m // (HO * WO)
    pix = offs_m % (HO * WO)
    oh = pix // WO
    ow = pix % WO
    ih0 = oh * STRIDE - 1
    iw0 = ow * STRIDE - 1

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)

    # Main channels: one flat loop over (tap, channel block) so that it software-pipelines.
    K_BLOCKS: tl.constexpr = (C_MAIN + BLOCK_K - 1) // BLOCK_K
    offs_k = tl.arange(0, BLOCK_K)
    for step in range(0, 9 * K_BLOCKS):
        tap = step // K_BLOCKS
        c0 = (step % K_BLOCKS) * BLOCK_K
        kh = tap // 3
        kw = tap % 3
        ih = ih0 + kh
        iw = iw0 + kw
        ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        cs = c0 + offs_k
        a_ptrs = x_ptr + (img * sxn + ih * sxh + iw * sxw)[:, None] + cs[None, :] * sxc
        b_ptrs = w_ptr + (kh * swh + kw * sww) + cs[:, None] * swc + offs_n[None, :] * swo
        if C_MAIN % BLOCK_K == 0:
            a = tl.load(a_ptrs, mask=ok[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=n_ok[None, :], other=0.0)
        else:
            k_ok = cs < C_MAIN
            a = tl.load(a_ptrs, mask=ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc = _mma(a, b, acc, PRECISION, DOT_IN_F32)

    # Tail channels (Cin % 16, e.g. the MaskIoU head's mask channel): one zero-padded 16-wide
    # step per tap. (A loop: unrolled, the 9 taps' loads were hoisted together, +16 registers.)
    if C_TAIL > 0:
        offs_t = C_MAIN + tl.arange(0, 16)
        for tap in range(0, 9):
            ih = ih0 + tap // 3
            iw = iw0 + tap % 3
            ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_ptrs = x_ptr + (img * sxn + ih * sxh + iw * sxw)[:, None] + offs_t[None, :] * sxc
            b_ptrs = w_ptr + ((tap // 3) * swh + (tap % 3) * sww) + offs_t[:, None] * swc + offs_n[None, :] * swo
            a = tl.load(a_ptrs, mask=ok[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=n_ok[None, :], other=0.0)
            acc = _mma(a, b, acc, PRECISION, DOT_IN_F32)

    # Epilogue: bias and ReLU in float32, one rounding to the output type.
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        acc = acc + bias[None, :]
    if RELU:
        acc = tl.where(acc > 0, acc, 0.0)
    y_ptrs = y_ptr + (img * syn + oh * syh + ow * syw)[:, None] + offs_n[None, :] * syc
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _backward_input_tile(
    g_ptr,
    w_ptr,
    img,
    ih,
    iw,
    m_ok,
    offs_n,
    n_ok,
    ph,
    pw,
    HO,
    WO,
    sgn,
    sgh,
    sgw,
    sgc,
    swo,
    swh,
    sww,
    swc,
    C_OUT: tl.constexpr,
    STRIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_IN_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    WIDTH: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """dx tile [BLOCK_M pixels of one parity class, WIDTH channels]: sum over taps and Cout."""
    # Taps that reach a pixel of parity (ph, pw): all 9 at stride 1; at stride 2, kh = 1 for even
    # rows and kh in {0, 2} for odd rows (the same for columns).
    if STRIDE == 1:
        taps_h = 3
        taps_w = 3
    else:
        taps_h = 1 + ph
        taps_w = 1 + pw
    K_BLOCKS: tl.constexpr = (C_OUT + BLOCK_K - 1) // BLOCK_K
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.full((BLOCK_M, WIDTH), 0.0, tl.float32)
    for step in range(0, taps_h * taps_w * K_BLOCKS):
        tap = step // K_BLOCKS
        c0 = (step % K_BLOCKS) * BLOCK_K
        if STRIDE == 1:
            kh = tap // 3
            kw = tap % 3
        else:
            kh = (1 - ph) + 2 * (tap // taps_w)
            kw = (1 - pw) + 2 * (tap % taps_w)
        # oh * STRIDE - 1 + kh = ih; th >= 0 is checked before dividing (C division truncates).
        th = ih + 1 - kh
        tw = iw + 1 - kw
        oh = th // STRIDE
        ow = tw // STRIDE
        ok = m_ok & (th >= 0) & (tw >= 0) & (oh < HO) & (ow < WO)
        cs = c0 + offs_k
        g_off = (img * sgn + oh * sgh + ow * sgw)[:, None] + cs[None, :] * sgc
        b_ptrs = w_ptr + (kh * swh + kw * sww) + cs[:, None] * swo + offs_n[None, :] * swc
        if C_OUT % BLOCK_K == 0:
            a_mask = ok[:, None]
            b_mask = n_ok[None, :]
        else:
            k_ok = cs < C_OUT
            a_mask = ok[:, None] & k_ok[None, :]
            b_mask = k_ok[:, None] & n_ok[None, :]
        a = tl.load(g_ptr + g_off, mask=a_mask, other=0.0)
        b = tl.load(b_ptrs, mask=b_mask, other=0.0)
        acc = _mma(a, b, acc, PRECISION, DOT_IN_F32)
    return acc


@triton.jit(do_not_specialize=["M_BUCKET"])
def _conv3x3_backward_input_kernel(
    g_ptr,
    w_ptr,
    dx_ptr,
    NB,
    H,
    W,
    HO,
    WO,
    M_BUCKET,  # autotuning key only
    sgn,
    sgh,
    sgw,
    sgc,
    swo,
    swh,
    sww,
    swc,
    sdn,
    sdh,
    sdw,
    sdc,
    C_OUT: tl.constexpr,
    C_MAIN: tl.constexpr,
    C_TAIL: tl.constexpr,
    STRIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_IN_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    TAIL_PART: tl.constexpr,
):
    # w: [Cout, Cpad, 3, 3] channels-last with Cpad as in the forward; dx: [N, Cin, H, W] with
    # the strides of such a padded buffer (the padding itself is not written).
    # Axis 1: the parity class (ph, pw) of the input pixels (one class at stride 1).
    cls = tl.program_id(1)
    ph = cls // STRIDE
    pw = cls % STRIDE
    hc = (H - ph + STRIDE - 1) // STRIDE
    wc = (W - pw + STRIDE - 1) // STRIDE
    m_total = NB * hc * wc

    # Axis 0: (pixel block, channel block) of the main channels, or pixel blocks of the tail
    # channels in the TAIL_PART launch. (One launch for both roles costs registers: ptxas kept
    # both roles' live ranges, 212 registers against 119 + 48 apart, fp16, 128x128 tiles, sm_90.)
    N_BLOCKS: tl.constexpr = 1 if TAIL_PART else (C_MAIN + BLOCK_N - 1) // BLOCK_N
    pid = tl.program_id(0)
    pid_m = pid // N_BLOCKS
    pid_n = pid % N_BLOCKS
    if pid_m * BLOCK_M < m_total:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_ok = offs_m < m_total
        img = offs_m // (hc * wc)
        rem = offs_m % (hc * wc)
        ih = (rem // wc) * STRIDE + ph
        iw = (rem % wc) * STRIDE + pw
        if TAIL_PART:
            offs_n = C_MAIN + tl.arange(0, 16)
            n_ok = offs_n < C_MAIN + C_TAIL
            WIDTH: tl.constexpr = 16
        else:
            offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = offs_n < C_MAIN
            WIDTH: tl.constexpr = BLOCK_N
        acc = _backward_input_tile(
            g_ptr, w_ptr, img, ih, iw, m_ok, offs_n, n_ok, ph, pw, HO, WO,
            sgn, sgh, sgw, sgc, swo, swh, sww, swc,
            C_OUT, STRIDE, PRECISION, DOT_IN_F32, BLOCK_M, WIDTH, BLOCK_K,
        )  # fmt: skip
        ptrs = dx_ptr + (img * sdn + ih * sdh + iw * sdw)[:, None] + offs_n[None, :] * sdc
        tl.store(ptrs, acc.to(dx_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _backward_weight_tile(
    g_ptr,
    x_ptr,
    offs_co,
    co_ok,
    offs_c,
    c_ok,
    kh,
    kw,
    kb_start,
    kb_end,
    P,
    H,
    W,
    HO,
    WO,
    sgn,
    sgh,
    sgw,
    sgc,
    sxn,
    sxh,
    sxw,
    sxc,
    STRIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_IN_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    WIDTH: tl.constexpr,
    BLOCK_K: tl.constexpr,
    WITH_BIAS: tl.constexpr,
):
    """dw tile [BLOCK_M output channels, WIDTH input channels] of tap (kh, kw) over pixel blocks
    [kb_start, kb_end); with WITH_BIAS also the bias gradient of the BLOCK_M output channels."""
    acc = tl.full((BLOCK_M, WIDTH), 0.0, tl.float32)
    db = tl.full((BLOCK_M,), 0.0, tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for kb in range(kb_start, kb_end):
        offs_p = kb * BLOCK_K + offs_k
        p_ok = offs_p < P
        img = offs_p // (HO * WO)
        pix = offs_p % (HO * WO)
        oh = pix // WO
        ow = pix % WO
        g_off = offs_co[:, None] * sgc + (img * sgn + oh * sgh + ow * sgw)[None, :]
        a = tl.load(g_ptr + g_off, mask=co_ok[:, None] & p_ok[None, :], other=0.0)
        ih = oh * STRIDE - 1 + kh
        iw = ow * STRIDE - 1 + kw
        ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        b_ptrs = x_ptr + (img * sxn + ih * sxh + iw * sxw)[:, None] + offs_c[None, :] * sxc
        b = tl.load(b_ptrs, mask=ok[:, None] & c_ok[None, :], other=0.0)
        acc = _mma(a, b, acc, PRECISION, DOT_IN_F32)
        if WITH_BIAS:
            db += tl.reduce(a.to(tl.float32), 1, _sum_combine)
    return acc, db


@triton.jit
def _conv3x3_backward_weight_kernel(
    g_ptr,
    x_ptr,
    dw_ptr,
    db_ptr,
    P,
    H,
    W,
    HO,
    WO,
    SPLITS,
    sgn,
    sgh,
    sgw,
    sgc,
    sxn,
    sxh,
    sxw,
    sxc,
    sds,
    sdo,
    sdt,
    sdc,
    sbs,
    C_OUT: tl.constexpr,
    C_MAIN: tl.constexpr,
    C_TAIL: tl.constexpr,
    STRIDE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_IN_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    TAIL_PART: tl.constexpr,
):
    # x: [N, Cpad, H, W] channels-last as in the forward; dw: float32 partials [SPLITS, Cout, 9,
    # Cpad] (the tail's padding is written too).
    # Axis 0: (Cout block, tap, Cin block) of the main channels, or (Cout block, tap) of the tail
    # channels in the TAIL_PART launch (a launch of its own, as in the input gradient).
    # Axis 1: the split of the pixel range; each program writes its own float32 partial.
    # The bias gradient comes from column 0 of the main launch, or of the tail one without main.
    N_BLOCKS: tl.constexpr = 1 if TAIL_PART else (C_MAIN + BLOCK_N - 1) // BLOCK_N
    BIAS_HERE: tl.constexpr = (not TAIL_PART) or C_MAIN == 0
    pid = tl.program_id(0)
    split = tl.program_id(1)
    pid_co = pid // (9 * N_BLOCKS)
    col = pid % (9 * N_BLOCKS)
    tap = col // N_BLOCKS
    cb = col % N_BLOCKS
    kh = tap // 3
    kw = tap % 3

    k_blocks = (P + BLOCK_K - 1) // BLOCK_K
    per_split = (k_blocks + SPLITS - 1) // SPLITS
    kb_start = split * per_split
    kb_end = tl.minimum(kb_start + per_split, k_blocks)

    offs_co = pid_co * BLOCK_M + tl.arange(0, BLOCK_M)
    co_ok = offs_co < C_OUT
    if TAIL_PART:
        offs_c = C_MAIN + tl.arange(0, 16)
        c_ok = offs_c < C_MAIN + 16  # all true: zero-padded input, padded partials
        WIDTH: tl.constexpr = 16
    else:
        offs_c = cb * BLOCK_N + tl.arange(0, BLOCK_N)
        c_ok = offs_c < C_MAIN
        WIDTH: tl.constexpr = BLOCK_N
    if BIAS_HERE and col == 0:
        acc, db = _backward_weight_tile(
            g_ptr, x_ptr, offs_co, co_ok, offs_c, c_ok, kh, kw, kb_start, kb_end, P, H, W, HO, WO,
            sgn, sgh, sgw, sgc, sxn, sxh, sxw, sxc,
            STRIDE, PRECISION, DOT_IN_F32, BLOCK_M, WIDTH, BLOCK_K, True,
        )  # fmt: skip
        tl.store(db_ptr + split * sbs + offs_co, db, mask=co_ok)
    else:
        acc, db = _backward_weight_tile(
            g_ptr, x_ptr, offs_co, co_ok, offs_c, c_ok, kh, kw, kb_start, kb_end, P, H, W, HO, WO,
            sgn, sgh, sgw, sgc, sxn, sxh, sxw, sxc,
            STRIDE, PRECISION, DOT_IN_F32, BLOCK_M, WIDTH, BLOCK_K, False,
        )  # fmt: skip
    ptrs = dw_ptr + (split * sds + offs_co * sdo + tap * sdt)[:, None] + offs_c[None, :] * sdc
    tl.store(ptrs, acc, mask=co_ok[:, None] & c_ok[None, :])


# --------------------------------------------------------------------------------------------
# Autotuning
# --------------------------------------------------------------------------------------------


def autotune_enabled() -> bool:
    """False when MSRCNN_TRITON_AUTOTUNE is 0/false/off: every launch uses default_config()."""
    return os.environ.get(AUTOTUNE_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _config(block_m, block_n, block_k, warps, stages):
    return triton.Config(
        {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k}, num_warps=warps, num_stages=stages
    )


# Register counts quoted below are ptxas's for sm_90, float16, the MaskIoU head's 257-channel
# layer at 100 RoIs (compiled here without a GPU; see docs/triton_conv3x3.md); none spills.
# Shared memory: num_stages x (BLOCK_M + BLOCK_N) x BLOCK_K x element size.


def forward_configs() -> list[triton.Config]:
    """Forward tiles [BLOCK_M output pixels, BLOCK_N output channels], K step BLOCK_K channels.

    The first is the default (autotuning off): 128x64x64, 8 warps, 4 stages: 96 registers and
    96 KB (fp16), two CTAs per SM; at 100 RoIs (M = 19600) its 616 CTAs make 2.3 waves of 264
    on an H100 where 128x128 tiles (127 registers, also two per SM) make 308 CTAs = 1.17 waves,
    the second nearly empty. 128x128 and 64x256 / 128x256 (which read each activation tile once
    for Cout = 256; 128x256 takes 235 registers, one CTA per SM) win when M is large (512
    RoIs); 64x64 tiles fill the SMs when M is small (the stride-2 layer has a quarter of the
    pixels).
    """
    return [
        _config(128, 64, 64, 8, 4),
        _config(128, 128, 64, 8, 3),
        _config(64, 128, 64, 4, 4),
        _config(128, 128, 32, 8, 4),
        _config(64, 256, 64, 8, 3),
        _config(128, 256, 64, 8, 3),
        _config(64, 64, 64, 4, 4),
        _config(64, 64, 32, 4, 6),
    ]


def backward_input_configs() -> list[triton.Config]:
    """Backward-input tiles [BLOCK_M input pixels of one parity class, BLOCK_N input channels],
    K step BLOCK_K output channels (at stride 2 each class has a quarter of the pixels). The same
    list as the forward: the same GEMM shape at stride 1 (72 registers for the default)."""
    return forward_configs()


def backward_weight_configs() -> list[triton.Config]:
    """Backward-weight tiles [BLOCK_M output channels, BLOCK_N input channels] of one tap, K step
    BLOCK_K pixels. Default 128x128x64, 8 warps (127 registers, 96 KB); split-K supplies the
    parallelism the 36 tiles of a 256x256 layer lack (weight_grad_splits)."""
    return [
        _config(128, 128, 64, 8, 3),
        _config(128, 64, 64, 8, 4),
        _config(64, 128, 64, 4, 4),
        _config(128, 128, 32, 8, 4),
        _config(64, 64, 128, 4, 3),
        _config(64, 64, 64, 4, 4),
        _config(128, 128, 128, 8, 3),
    ]


_CONFIGS = {
    "forward": forward_configs,
    "backward_input": backward_input_configs,
    "backward_weight": backward_weight_configs,
}
H100_SHARED_MEMORY = 232448  # bytes per block (opt-in) on sm_90; sm_80 has 166912


def shared_memory_bytes(config: triton.Config, element_size: int) -> int:
    """Shared memory of a config's operand pipeline: what Triton allocates for these kernels on
    sm_90 (on sm_80 it allocates less, e.g. 144 KB for 192 here: the estimate is conservative)."""
    k = config.kwargs
    return config.num_stages * (k["BLOCK_M"] + k["BLOCK_N"]) * k["BLOCK_K"] * element_size


def default_config(
    kernel: str, *, interpret: bool = False, element_size: int = 2, max_shared_memory: int = H100_SHARED_MEMORY
) -> triton.Config:
    """The config used when autotuning is off: the first of the kernel's list that fits in
    ``max_shared_memory`` with operands of ``element_size`` bytes (float32 on an A100 skips the
    96 KB-for-fp16 default); 32-wide tiles under the interpreter, where the time goes per tile
    and per K step, not per element (tests pass 16-wide tiles where they need several K steps)."""
    if interpret:
        return _config(32, 32, 32, 1, 1)
    configs = _CONFIGS[kernel]()
    fitting = [c for c in configs if shared_memory_bytes(c, element_size) <= max_shared_memory]
    return fitting[0] if fitting else min(configs, key=lambda c: shared_memory_bytes(c, element_size))


def _max_shared_memory(device: torch.device) -> int:
    if device.type != "cuda":
        return H100_SHARED_MEMORY
    props = torch.cuda.get_device_properties(device)
    return getattr(props, "shared_memory_per_block_optin", H100_SHARED_MEMORY)


def _prune_configs(configs, named_args, **kwargs):
    """Autotuner pre-filter: drop the configs whose pipeline does not fit in shared memory (so
    they are not compiled and timed only to fail)."""
    operand = next(iter(named_args.values()))  # the first tensor argument: input or gradient
    budget = _max_shared_memory(operand.device)
    fitting = [c for c in configs if shared_memory_bytes(c, operand.element_size()) <= budget]
    return fitting or configs[-1:]


def _m_bucket(m) -> int:
    """Autotuning key for the GEMM's M: the power-of-two bucket of M / 1024 (0 when symbolic)."""
    if not isinstance(m, int):
        return 0
    return triton.next_power_of_2(max(1, m // 1024))


_PRUNE = {"early_config_prune": _prune_configs}
_forward_autotuned = triton.autotune(
    configs=forward_configs(),
    key=["M_BUCKET", "C_OUT", "C_MAIN", "C_TAIL", "STRIDE", "HAS_BIAS", "RELU"],
    prune_configs_by=_PRUNE,
)(_conv3x3_forward_kernel)
_backward_input_autotuned = triton.autotune(
    configs=backward_input_configs(),
    key=["M_BUCKET", "C_OUT", "C_MAIN", "C_TAIL", "STRIDE", "TAIL_PART"],
    prune_configs_by=_PRUNE,
)(_conv3x3_backward_input_kernel)
_backward_weight_autotuned = triton.autotune(
    configs=backward_weight_configs(),
    key=["SPLITS", "C_OUT", "C_MAIN", "C_TAIL", "STRIDE", "TAIL_PART"],
    prune_configs_by=_PRUNE,
)(_conv3x3_backward_weight_kernel)


# --------------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------------


def interpreting() -> bool:
    """TRITON_INTERPRET=1 now (read at call time, as Triton itself does)."""
    return bool(triton.knobs.runtime.interpret)


@contextlib.contextmanager
def _env(name, value):
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


@functools.cache
def _interpreted_module():
    """A second copy of this module, imported with TRITON_INTERPRET=1.

    ``triton.jit`` picks compiled or interpreted when it decorates, so kernels imported without
    TRITON_INTERPRET (as msrcnn_fast is, by pytest's first conftest) would not run on CPU tensors
    later. The copy's kernels and their @jit helpers are all InterpretedFunctions.
    """
    name = __name__ + "._interpreted"
    spec = importlib.util.spec_from_file_location(name, __file__)
    module = importlib.util.module_from_spec(spec)
    with _env("TRITON_INTERPRET", "1"):
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
    return module


def _runnable(kernel):
    """The kernel itself, or its interpreted twin when TRITON_INTERPRET=1 and it was compiled."""
    if interpreting() and not _is_interpreted(kernel):
        return getattr(_interpreted_module(), kernel.fn.__name__)
    return kernel


def _is_interpreted(kernel) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernel, InterpretedFunction)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------


def split_channels(channels: int) -> tuple[int, int]:
    """(C_MAIN, C_TAIL): the largest multiple of 16 and the rest, e.g. 257 -> (256, 1)."""
    tail = channels % TAIL_BLOCK
    return channels - tail, tail


def padded_channels(channels: int) -> int:
    """Channels of the channels-last buffers the kernels read and write: C_MAIN, plus 16 when
    there is a tail (257 -> 272), so that every pixel's row is 32-byte aligned."""
    c_main, c_tail = split_channels(channels)
    return c_main + (TAIL_BLOCK if c_tail else 0)


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 follows cuDNN's convolution setting (TF32 by default, as F.conv2d)."""
    if dtype != torch.float32:
        return "ieee"
    try:
        precision = torch.backends.cudnn.conv.fp32_precision
        if precision == "none":
            precision = torch.backends.fp32_precision
        return "tf32" if precision == "tf32" else "ieee"
    except AttributeError:  # torch without the fp32_precision API
        return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


def _dot_in_f32(dtype: torch.dtype) -> bool:
    return dtype == torch.bfloat16 and interpreting()


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return _INTERPRETER_SMS


def _launch_config(kernel_name, config, operand):
    """(use the autotuner?, keyword arguments of an explicit config)."""
    if config is None and autotune_enabled() and not interpreting():
        return True, {}
    if config is None:
        config = default_config(
            kernel_name,
            interpret=interpreting(),
            element_size=operand.element_size(),
            max_shared_memory=_max_shared_memory(operand.device),
        )
    return False, {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}


def _nhwc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """Strides of an [N, C, H, W] tensor in (n, h, w, c) order."""
    return t.stride(0), t.stride(2), t.stride(3), t.stride(1)


def _whwc_strides(w: torch.Tensor) -> tuple[int, int, int, int]:
    """Strides of an [Cout, Cin, 3, 3] weight in (cout, kh, kw, cin) order."""
    return w.stride(0), w.stride(2), w.stride(3), w.stride(1)


def _check_index_range(*tensors):
    """The kernels index in int32: every element offset must stay below 2^31."""
    for t in tensors:
        span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
        if t.numel() and span >= 2**31:
            raise ValueError(f"conv3x3: tensors spanning 2^31 or more elements are not supported ({tuple(t.shape)})")


def _padded_channels_last(t: torch.Tensor) -> torch.Tensor:
    """t [N, C, H, W] as [N, padded_channels(C), H, W] channels-last, zeros in the padding.

    No copy when t is channels-last already and needs no padding (the head's 256-channel maps)."""
    n, c, h, w = t.shape
    c_pad = padded_channels(c)
    if c_pad == c:
        return t.contiguous(memory_format=torch.channels_last)
    rows = t.new_empty((n, h, w, c_pad))
    rows[..., c:].zero_()
    rows[..., :c].copy_(t.permute(0, 2, 3, 1))
    return rows.permute(0, 3, 1, 2)


def _empty_padded_channels_last(n, c, h, w, *, dtype, device) -> torch.Tensor:
    """An uninitialised [N, C, H, W] tensor (not a view) with the strides of a channels-last
    buffer of padded_channels(C) channels: aligned pixel rows, padding never touched."""
    c_pad = padded_channels(c)
    return torch.empty_strided((n, c, h, w), (h * w * c_pad, 1, w * c_pad, c_pad), dtype=dtype, device=device)


def conv3x3_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    *,
    relu: bool = True,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """relu?(conv2d(x, weight, bias, stride, padding=1)), channels-last, in x's dtype.

    x: [N, Cin, H, W] (any layout), weight: [Cout, Cin, 3, 3], bias: [Cout] or None.
    ``config``: run this config instead of autotuning (tests, experiments).
    """
    n, c_in, h, w = x.shape
    c_out = weight.size(0)
    c_main, c_tail = split_channels(c_in)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    y = torch.empty((n, c_out, ho, wo), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    m = n * ho * wo
    if m == 0 or c_out == 0:
        return y
    if c_in == 0:
        if bias is None:
            return y.zero_()
        return y.copy_((torch.relu(bias) if relu else bias).view(1, -1, 1, 1).expand_as(y))
    x = _padded_channels_last(x)
    weight = _padded_channels_last(weight)
    _check_index_range(x, y)
    autotuned, kwargs = _launch_config("forward", config, x)
    kernel = _forward_autotuned if autotuned else _runnable(_conv3x3_forward_kernel)

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(c_out, meta["BLOCK_N"]),)

    wrap_triton(kernel)[grid](
        x, weight, bias if bias is not None else weight, y,
        m, h, w, ho, wo, _m_bucket(m),
        *_nhwc_strides(x), *_whwc_strides(weight), *_nhwc_strides(y),
        C_OUT=c_out, C_MAIN=c_main, C_TAIL=c_tail, STRIDE=stride, HAS_BIAS=bias is not None,
        RELU=relu, PRECISION=_dot_precision(x.dtype), DOT_IN_F32=_dot_in_f32(x.dtype), **kwargs,
    )  # fmt: skip
    return y


def _input_grad_grid(m_class, c_main, stride, tail_part):
    def grid(meta):
        n_blocks = 1 if tail_part else triton.cdiv(c_main, meta["BLOCK_N"])
        return (triton.cdiv(m_class, meta["BLOCK_M"]) * n_blocks, stride * stride)

    return grid


def _weight_grad_grid(c_out, c_main, splits, tail_part):
    def grid(meta):
        n_blocks = 1 if tail_part else triton.cdiv(c_main, meta["BLOCK_N"])
        return (triton.cdiv(c_out, meta["BLOCK_M"]) * 9 * n_blocks, splits)

    return grid


def _parts(c_main: int, c_tail: int) -> list[bool]:
    """The launches (TAIL_PART False, True) that have channels to compute."""
    return [tail for tail, channels in ((False, c_main), (True, c_tail)) if channels > 0]


def conv3x3_backward_input(
    grad: torch.Tensor,
    weight: torch.Tensor,
    stride: int,
    height: int,
    width: int,
    *,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """Gradient of the input of a 3x3 convolution (padding 1): conv_transpose(grad, weight).

    grad: [N, Cout, Ho, Wo], the gradient of the convolution's output (for conv3x3_forward,
    already multiplied by the ReLU mask); weight: [Cout, Cin, 3, 3]. Returns [N, Cin, height,
    width] in grad's dtype, with the strides of a channels-last tensor of padded_channels(Cin)
    channels (H*W*Cpad, 1, W*Cpad, Cpad): aligned rows for the stores, no copy.
    """
    n, c_out, ho, wo = grad.shape
    c_in = weight.size(1)
    c_main, c_tail = split_channels(c_in)
    dx = _empty_padded_channels_last(n, c_in, height, width, dtype=grad.dtype, device=grad.device)
    if dx.numel() == 0:
        return dx
    if c_out == 0 or ho * wo == 0:
        return dx.zero_()
    grad = grad.contiguous(memory_format=torch.channels_last)
    weight = _padded_channels_last(weight)
    _check_index_range(grad, dx)
    autotuned, kwargs = _launch_config("backward_input", config, grad)
    kernel = _backward_input_autotuned if autotuned else _runnable(_conv3x3_backward_input_kernel)
    # The largest parity class has ceil(H / s) x ceil(W / s) pixels; smaller ones exit early.
    m_class = n * triton.cdiv(height, stride) * triton.cdiv(width, stride)
    for tail_part in _parts(c_main, c_tail):
        wrap_triton(kernel)[_input_grad_grid(m_class, c_main, stride, tail_part)](
            grad, weight, dx,
            n, height, width, ho, wo, _m_bucket(m_class),
            *_nhwc_strides(grad), *_whwc_strides(weight), *_nhwc_strides(dx),
            C_OUT=c_out, C_MAIN=c_main, C_TAIL=c_tail, STRIDE=stride, PRECISION=_dot_precision(grad.dtype),
            DOT_IN_F32=_dot_in_f32(grad.dtype), TAIL_PART=tail_part, **kwargs,
        )  # fmt: skip
    return dx


def weight_grad_splits(pixels: int, c_out: int, c_in: int, num_sms: int, *, min_pixels: int = 512) -> int:
    """Split-K factor of the weight gradient: as many splits as fit in one wave of two CTAs per
    SM (the default 128x128 tile's occupancy), counting the tiles of the main and tail launches
    as that tile has them, with at least ``min_pixels`` pixels of reduction per split. Depends
    on the shapes only, not the config, so the partial buffer's size is known before launch."""
    c_main, c_tail = split_channels(c_in)
    tiles = triton.cdiv(c_out, 128) * 9 * (triton.cdiv(c_main, 128) + (1 if c_tail else 0))
    if tiles == 0:  # no output or input channels: nothing to split
        return 1
    return max(1, min(2 * num_sms // tiles, pixels // min_pixels))


def conv3x3_backward_weight(
    grad: torch.Tensor,
    x: torch.Tensor,
    stride: int,
    *,
    config: triton.Config | None = None,
    splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the weight [Cout, Cin, 3, 3] and bias [Cout] of a 3x3 convolution (padding 1)
    of x, given the gradient of its output (for conv3x3_forward, already multiplied by the ReLU
    mask); in x's dtype.

    ``splits``: split-K factor (default: weight_grad_splits); the float32 partials are summed
    in a fixed order, so the result does not depend on scheduling.
    """
    n, c_in, h, w = x.shape
    _, c_out, ho, wo = grad.shape
    c_main, c_tail = split_channels(c_in)
    pixels = n * ho * wo
    if splits is None:
        min_pixels = 32 if interpreting() else 512
        splits = weight_grad_splits(pixels, c_out, c_in, _num_sms(x.device), min_pixels=min_pixels)
    partial_w = torch.empty((splits, c_out, 9, padded_channels(c_in)), dtype=torch.float32, device=x.device)
    partial_b = torch.empty((splits, c_out), dtype=torch.float32, device=x.device)
    if pixels == 0 or c_out == 0 or c_in == 0:
        partial_w.zero_()
        partial_b.zero_()
    else:
        grad = grad.contiguous(memory_format=torch.channels_last)
        x = _padded_channels_last(x)
        _check_index_range(grad, x, partial_w)
        autotuned, kwargs = _launch_config("backward_weight", config, grad)
        kernel = _backward_weight_autotuned if autotuned else _runnable(_conv3x3_backward_weight_kernel)
        for tail_part in _parts(c_main, c_tail):
            wrap_triton(kernel)[_weight_grad_grid(c_out, c_main, splits, tail_part)](
                grad, x, partial_w, partial_b,
                pixels, h, w, ho, wo, splits,
                *_nhwc_strides(grad), *_nhwc_strides(x), *partial_w.stride(), partial_b.stride(0),
                C_OUT=c_out, C_MAIN=c_main, C_TAIL=c_tail, STRIDE=stride, PRECISION=_dot_precision(x.dtype),
                DOT_IN_F32=_dot_in_f32(x.dtype), TAIL_PART=tail_part, **kwargs,
            )  # fmt: skip
    dw = partial_w[0] if splits == 1 else partial_w.sum(0)
    db = partial_b[0] if splits == 1 else partial_b.sum(0)
    dw = dw[..., :c_in].unflatten(1, (3, 3)).permute(0, 3, 1, 2)
    return dw.to(x.dtype, memory_format=torch.contiguous_format), db.to(x.dtype)
