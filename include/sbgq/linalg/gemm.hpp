// The f32 matrix product of the pipeline's heavy loops: C = beta * C + alpha * A * B for
// strided operands, cache-blocked with packed panels (the loop structure of Goto & van de
// Geijn, "Anatomy of high-performance matrix multiplication", 2008, and of BLIS), with one
// register-blocked micro-kernel per SIMD level:
//   sbgq::ref::gemm_micro      scalar reference (std::fma),
//   sbgq::avx2::gemm_micro     6 x 16 tile (kernels/avx2/gemm.hpp),
//   sbgq::avx512::gemm_micro   12 x 32 tile (kernels/avx512/gemm.hpp),
// the two vector kernels sharing one body (kernels/shared/gemm-inl.hpp).
//
// Users: the forward pass's linear layers (y = x w^T), X^T X accumulation (syrk_lower),
// the blocked Cholesky of linalg/cholesky.hpp and gptq's lazy updates.
//
// Results are the same bits at every level, for any thread count and any tiling: every
// C element is updated once per block of kc = 256 values of k (in ascending order), by
// adding a sum that starts at +0 and takes one fused multiply-add per k in order. Only the
// operands' packing (shared scalar code, alpha applied there) and the choice to compute C^T
// when C is column-major depend on the arguments, and both are the same at every level.
// Against a plain dot product the sums differ only by rounding (f32, blocked).
//
// Layout: element (i, j) of an operand X is x[i * rs + j * cs]; any strides work (row- or
// column-major, transposed views), the packing copies them into contiguous panels.
// Thread-safety: gemm is reentrant (its packing buffers are thread_local); gemm_parallel
// shares each packed block of B between its threads (parallel_for), which take tiles of C.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <thread>
#include <vector>

#include "../core/base.hpp"
#include "../core/parallel.hpp"
#include "../simd/dispatch.hpp"
#include "../kernels/avx2/gemm.hpp"
#include "../kernels/avx512/gemm.hpp"

SBGQ_BEGIN_NAMESPACE

/// A strided f32 matrix operand: element (i, j) at p[i * rs + j * cs].
struct gemm_operand {
  const float* p = nullptr;
  std::ptrdiff_t rs = 0, cs = 1;
};
/// The output operand of gemm.
struct gemm_output {
  float* p = nullptr;
  std::ptrdiff_t rs = 0, cs = 1;
};

namespace ref {
/// The scalar micro-kernel: C[i][j] += sum_t ap[t * MR + i] * bp[t * NR + j] (std::fma,
/// t ascending, the sum starting at +0), for i < mr, j < nr; the same bits as the AVX2
/// and AVX-512 kernels.
inline void gemm_micro(std::size_t kc, const float* ap, const float* bp, float* c, std::ptrdiff_t rs,
                       std::ptrdiff_t cs, int mr, int nr) {
  constexpr int MR = 4, NR = 4;
  float acc[MR][NR] = {};
  for (std::size_t t = 0; t < kc; ++t, ap += MR, bp += NR)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = std::fma(ap[i], bp[j], acc[i][j]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * rs + j * cs] += acc[i][j];
}
inline constexpr int gemm_mr = 4, gemm_nr = 4;
}  // namespace ref

namespace detail::gemm_impl {

/// Cache blocks: kc values of k per packed panel pair (fixed: part of the result's
/// definition), mc rows of A per packed block (a multiple of every MR), nc columns of B.
inline constexpr std::size_t kc = 256, mc = 144, nc = 4096;

/// Packs alpha * A[0:mb, 0:kb] into panels of MR rows: panel p holds, for t = 0..kb-1, the
/// MR values A[p*MR + r][t] (zero past mb).
inline void pack_a(gemm_operand a, std::size_t mb, std::size_t kb, float alpha, int MR, float* dst) {
  const auto mr = static_cast<std::size_t>(MR);
  for (std::size_t p0 = 0; p0 < mb; p0 += mr, dst += mr * kb) {
    const std::size_t pr = std::min(mr, mb - p0);
    const float* src = a.p + static_cast<std::ptrdiff_t>(p0) * a.rs;
    if (pr < mr)
      for (std::size_t t = 0; t < kb; ++t)
        for (std::size_t r = pr; r < mr; ++r) dst[t * mr + r] = 0.0f;
    // Read along whichever index is contiguous (rows of a row-major A, columns otherwise).
    if (a.cs == 1) {
      for (std::size_t r = 0; r < pr; ++r) {
        const float* row = src + static_cast<std::ptrdiff_t>(r) * a.rs;
        if (alpha == 1.0f)
          for (std::size_t t = 0; t < kb; ++t) dst[t * mr + r] = row[t];
        else
          for (std::size_t t = 0; t < kb; ++t) dst[t * mr + r] = alpha * row[t];
      }
    } else {
      for (std::size_t t = 0; t < kb; ++t) {
        const float* col = src + static_cast<std::ptrdiff_t>(t) * a.cs;
        if (alpha == 1.0f)
          for (std::size_t r = 0; r < pr; ++r) dst[t * mr + r] = col[static_cast<std::ptrdiff_t>(r) * a.rs];
        else
          for (std::size_t r = 0; r < pr; ++r) dst[t * mr + r] = alpha * col[static_cast<std::ptrdiff_t>(r) * a.rs];
      }
    }
  }
}

/// Packs B[0:kb, 0:nb] into panels of NR columns: panel p holds, for t = 0..kb-1, the NR
/// values B[t][p*NR + c] (zero past nb).
inline void pack_b(gemm_operand b, std::size_t kb, std::size_t nb, int NR, float* dst) {
  const auto nr = static_cast<std::size_t>(NR);
  for (std::size_t p0 = 0; p0 < nb; p0 += nr, dst += nr * kb) {
    const std::size_t pc = std::min(nr, nb - p0);
    if (pc < nr)
      for (std::size_t t = 0; t < kb; ++t)
        for (std::size_t c = pc; c < nr; ++c) dst[t * nr + c] = 0.0f;
    const float* src = b.p + static_cast<std::ptrdiff_t>(p0) * b.cs;
    if (b.cs == 1) {
      for (std::size_t t = 0; t < kb; ++t) {
        const float* row = src + static_cast<std::ptrdiff_t>(t) * b.rs;
        for (std::size_t c = 0; c < pc; ++c) dst[t * nr + c] = row[c];
      }
    } else {
      for (std::size_t c = 0; c < pc; ++c) {
        const float* col = src + static_cast<std::ptrdiff_t>(c) * b.cs;
        for (std::size_t t = 0; t < kb; ++t) dst[t * nr + c] = col[static_cast<std::ptrdiff_t>(t) * b.rs];
      }
    }
  }
}

using micro_fn = void (*)(std::size_t, const float*, const float*, float*, std::ptrdiff_t, std::ptrdiff_t, int, int);

/// C += alpha * A * B (beta already applied) on n_threads threads. Per block of nc columns
/// and kc values of k, B's block is packed once (its panels split between the threads),
/// then the threads take tasks of (mc rows) x (a group of B's panels): each packs its rows
/// of A (thread_local buffer) and runs the micro-kernel over its tile. Packing is ~100x
/// slower per value than a multiply-add, so each operand is packed as few times as
/// possible: B once per call, A once per column group of each block.
inline void blocked(micro_fn micro, int MR, int NR, std::size_t m, std::size_t n, std::size_t k, float alpha,
                    gemm_operand a, gemm_operand b, gemm_output c, int n_threads) {
  thread_local std::vector<float> bpack_own;
  std::vector<float> bpack_shared;
  std::vector<float>& bpack = n_threads == 1 ? bpack_own : bpack_shared;
  const auto mr = static_cast<std::size_t>(MR), nr = static_cast<std::size_t>(NR);
  const std::size_t row_blocks = (m + mc - 1) / mc;
  const auto threads = static_cast<std::size_t>(n_threads);  // >= 1 (run's callers)
  for (std::size_t jc = 0; jc < n; jc += nc) {
    const std::size_t nb = std::min(nc, n - jc), panels = (nb + nr - 1) / nr;
    // Column groups: enough tasks for 2 per thread when there are few row blocks.
    const std::size_t groups = std::min(panels, std::max<std::size_t>(1, (2 * threads + row_blocks - 1) / row_blocks));
    const std::size_t per_group = (panels + groups - 1) / groups;
    for (std::size_t pc = 0; pc < k; pc += kc) {
      const std::size_t kb = std::min(kc, k - pc);
      bpack.resize(panels * nr * kb);
      const gemm_operand bblk{b.p + static_cast<std::ptrdiff_t>(pc) * b.rs + static_cast<std::ptrdiff_t>(jc) * b.cs,
                              b.rs, b.cs};
      parallel_for(panels, 8, n_threads, [&](std::size_t p0, std::size_t p1) {
        const std::size_t j0 = p0 * nr, j1 = std::min(nb, p1 * nr);
        pack_b({bblk.p + static_cast<std::ptrdiff_t>(j0) * b.cs, b.rs, b.cs}, kb, j1 - j0, NR, bpack.data() + j0 * kb);
      });
      const gemm_operand ablk{a.p + static_cast<std::ptrdiff_t>(pc) * a.cs, a.rs, a.cs};
      parallel_for(row_blocks * groups, 1, n_threads, [&](std::size_t t0, std::size_t t1) {
        thread_local std::vector<float> apack;
        for (std::size_t task = t0; task < t1; ++task) {
          const std::size_t ic = task / groups * mc, g = task % groups;
          const std::size_t mb = std::min(mc, m - ic);
          const std::size_t jr0 = g * per_group * nr, jr1 = std::min(nb, (g + 1) * per_group * nr);
          if (jr0 >= jr1) continue;
          apack.resize((mb + mr - 1) / mr * mr * kb);
          pack_a({ablk.p + static_cast<std::ptrdiff_t>(ic) * a.rs, a.rs, a.cs}, mb, kb, alpha, MR, apack.data());
          for (std::size_t jr = jr0; jr < jr1; jr += nr)
            for (std::size_t ir = 0; ir < mb; ir += mr)
              micro(kb, apack.data() + ir * kb, bpack.data() + jr * kb,
                    c.p + static_cast<std::ptrdiff_t>(ic + ir) * c.rs + static_cast<std::ptrdiff_t>(jc + jr) * c.cs,
                    c.rs, c.cs, static_cast<int>(std::min(mr, mb - ir)), static_cast<int>(std::min(nr, nb - jr)));
        }
      });
    }
  }
}

/// C = beta * C (beta = 0 writes zeros, whatever C held).
inline void scale(std::size_t m, std::size_t n, float beta, gemm_output c) {
  if (beta == 1.0f) return;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      float& x = c.p[static_cast<std::ptrdiff_t>(i) * c.rs + static_cast<std::ptrdiff_t>(j) * c.cs];
      x = beta == 0.0f ? 0.0f : beta * x;
    }
}

inline void run(simd_level level, std::size_t m, std::size_t n, std::size_t k, float alpha, gemm_operand a,
                gemm_operand b, float beta, gemm_output c, int n_threads) {
  if (m == 0 || n == 0) return;
  scale(m, n, beta, c);
  if (k == 0 || alpha == 0.0f) return;
  if (c.cs != 1 && c.rs == 1) {
    // Column-major C: compute C^T = B^T A^T, whose rows are contiguous.
    std::swap(m, n);
    const gemm_operand at{b.p, b.cs, b.rs}, bt{a.p, a.cs, a.rs};
    a = at;
    b = bt;
    c = {c.p, c.cs, c.rs};
  }
#if SBGQ_X86_KERNELS
  if (level >= simd_level::avx512 && supported_simd_level() >= simd_level::avx512)
    return blocked(avx512::gemm_micro, avx512::gemm_mr, avx512::gemm_nr, m, n, k, alpha, a, b, c, n_threads);
  if (level >= simd_level::avx2 && supported_simd_level() >= simd_level::avx2)
    return blocked(avx2::gemm_micro, avx2::gemm_mr, avx2::gemm_nr, m, n, k, alpha, a, b, c, n_threads);
#endif
  (void)level;
  blocked(ref::gemm_micro, ref::gemm_mr, ref::gemm_nr, m, n, k, alpha, a, b, c, n_threads);
}
}  // namespace detail::gemm_impl

/// C (m x n) = beta * C + alpha * A (m x k) * B (k x n) on the calling thread, with the
/// micro-kernel of `level` (capped by what this build has). beta = 0 ignores C's contents.
/// Operands must not overlap C. Same bits at every level (file comment).
inline void gemm(simd_level level, std::size_t m, std::size_t n, std::size_t k, float alpha, gemm_operand a,
                 gemm_operand b, float beta, gemm_output c) {
  detail::gemm_impl::run(level, m, n, k, alpha, a, b, beta, c, 1);
}

/// gemm on n_threads threads (<= 0: all hardware threads): B's blocks are packed once and
/// shared, the tiles of C split between the threads; the same bits as gemm for any count.
inline void gemm_parallel(simd_level level, std::size_t m, std::size_t n, std::size_t k, float alpha, gemm_operand a,
                          gemm_operand b, float beta, gemm_output c, int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  detail::gemm_impl::run(level, m, n, k, alpha, a, b, beta, c, n_threads);
}

/// The lower triangle of H (n x n, column-major, leading dimension ldh) += alpha X^T X,
/// X the k x n operand x: H_ij += alpha sum_t X_ti X_tj for i >= j (the statistics of gptq
/// with alpha = 1, the Cholesky's trailing update with alpha = -1). Work in column tiles of
/// 512, each from its diagonal down as one multi-threaded product (so each column tile of
/// X is packed once and its rows below once): n^2 k / 2 multiply-adds plus the tiles'
/// diagonal blocks (about 512 / n of the work), whose strict upper part is written too
/// (with the same symmetric values). n_threads as gemm_parallel; the same bits for any count.
inline void syrk_lower(simd_level level, std::size_t n, std::size_t k, float alpha, gemm_operand x, float* h,
                       std::size_t ldh, int n_threads) {
  constexpr std::size_t tw = 512;
  const auto lh = static_cast<std::ptrdiff_t>(ldh);
  for (std::size_t c0 = 0; c0 < n; c0 += tw) {
    const auto o = static_cast<std::ptrdiff_t>(c0);
    const float* xc = x.p + o * x.cs;  // column c0 of X
    gemm_parallel(level, n - c0, std::min(tw, n - c0), k, alpha, {xc, x.cs, x.rs}, {xc, x.rs, x.cs}, 1.0f,
                  {h + o + o * lh, 1, lh}, n_threads);
  }
}

SBGQ_END_NAMESPACE
