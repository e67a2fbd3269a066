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
// splits C into fixed tiles run by parallel_for.
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
inline constexpr std::size_t kc = 256, mc = 144, nc = 2048;

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
    for (std::size_t r = 0; r < pr; ++r) {
      const float* row = src + static_cast<std::ptrdiff_t>(r) * a.rs;
      if (alpha == 1.0f)
        for (std::size_t t = 0; t < kb; ++t) dst[t * mr + r] = row[static_cast<std::ptrdiff_t>(t) * a.cs];
      else
        for (std::size_t t = 0; t < kb; ++t) dst[t * mr + r] = alpha * row[static_cast<std::ptrdiff_t>(t) * a.cs];
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

/// C += alpha * A * B (beta already applied), one thread.
inline void blocked(micro_fn micro, int MR, int NR, std::size_t m, std::size_t n, std::size_t k, float alpha,
                    gemm_operand a, gemm_operand b, gemm_output c) {
  thread_local std::vector<float> apack, bpack;
  const auto mr = static_cast<std::size_t>(MR), nr = static_cast<std::size_t>(NR);
  for (std::size_t jc = 0; jc < n; jc += nc) {
    const std::size_t nb = std::min(nc, n - jc);
    for (std::size_t pc = 0; pc < k; pc += kc) {
      const std::size_t kb = std::min(kc, k - pc);
      bpack.resize((nb + nr - 1) / nr * nr * kb);
      pack_b({b.p + static_cast<std::ptrdiff_t>(pc) * b.rs + static_cast<std::ptrdiff_t>(jc) * b.cs, b.rs, b.cs}, kb,
             nb, NR, bpack.data());
      for (std::size_t ic = 0; ic < m; ic += mc) {
        const std::size_t mb = std::min(mc, m - ic);
        apack.resize((mb + mr - 1) / mr * mr * kb);
        pack_a({a.p + static_cast<std::ptrdiff_t>(ic) * a.rs + static_cast<std::ptrdiff_t>(pc) * a.cs, a.rs, a.cs}, mb,
               kb, alpha, MR, apack.data());
        for (std::size_t jr = 0; jr < nb; jr += nr)
          for (std::size_t ir = 0; ir < mb; ir += mr)
            micro(kb, apack.data() + ir * kb, bpack.data() + jr * kb,
                  c.p + static_cast<std::ptrdiff_t>(ic + ir) * c.rs + static_cast<std::ptrdiff_t>(jc + jr) * c.cs, c.rs,
                  c.cs, static_cast<int>(std::min(mr, mb - ir)), static_cast<int>(std::min(nr, nb - jr)));
      }
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

}  // namespace detail::gemm_impl

/// C (m x n) = beta * C + alpha * A (m x k) * B (k x n) on the calling thread, with the
/// micro-kernel of `level` (capped by what this build has). beta = 0 ignores C's contents.
/// Operands must not overlap C. Same bits at every level (file comment).
inline void gemm(simd_level level, std::size_t m, std::size_t n, std::size_t k, float alpha, gemm_operand a,
                 gemm_operand b, float beta, gemm_output c) {
  using namespace detail::gemm_impl;
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
    return blocked(avx512::gemm_micro, avx512::gemm_mr, avx512::gemm_nr, m, n, k, alpha, a, b, c);
  if (level >= simd_level::avx2 && supported_simd_level() >= simd_level::avx2)
    return blocked(avx2::gemm_micro, avx2::gemm_mr, avx2::gemm_nr, m, n, k, alpha, a, b, c);
#endif
  (void)level;
  blocked(ref::gemm_micro, ref::gemm_mr, ref::gemm_nr, m, n, k, alpha, a, b, c);
}

/// gemm on n_threads threads (<= 0: all), C split into tiles of at most 768 x 1024, made
/// smaller (down to 96 x 128) until there are 4 per thread; the same bits as gemm for any
/// thread count (results do not depend on tiling).
inline void gemm_parallel(simd_level level, std::size_t m, std::size_t n, std::size_t k, float alpha, gemm_operand a,
                          gemm_operand b, float beta, gemm_output c, int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::size_t tm = 768, tn = 1024;
  auto tasks = [&] { return ((m + tm - 1) / tm) * ((n + tn - 1) / tn); };
  const auto want = 4 * static_cast<std::size_t>(n_threads);
  for (bool rows = true; tasks() < want && (tm > 96 || tn > 128); rows = !rows) {
    if (rows && tm > 96 && tm >= m / 2)
      tm /= 2;
    else if (tn > 128)
      tn /= 2;
    else if (tm > 96)
      tm /= 2;
  }
  const std::size_t nm = (m + tm - 1) / tm, nn = (n + tn - 1) / tn;
  if (nm * nn <= 1 || n_threads == 1) return gemm(level, m, n, k, alpha, a, b, beta, c);
  parallel_for(nm * nn, 1, n_threads, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t i0 = t / nn * tm, j0 = t % nn * tn;
      const auto io = static_cast<std::ptrdiff_t>(i0), jo = static_cast<std::ptrdiff_t>(j0);
      gemm(level, std::min(tm, m - i0), std::min(tn, n - j0), k, alpha, {a.p + io * a.rs, a.rs, a.cs},
           {b.p + jo * b.cs, b.rs, b.cs}, beta, {c.p + io * c.rs + jo * c.cs, c.rs, c.cs});
    }
  });
}

/// The lower triangle of H (n x n, column-major, leading dimension ldh) += X^T X, X the
/// k x n row-major matrix x (leading dimension ldx): H_ij += sum_t X_ti X_tj for i >= j,
/// the statistics of gptq. Work in column tiles of 256 (rows from the tile's diagonal
/// down, in pieces of 768): n^2 k / 2 multiply-adds plus the tiles' diagonal blocks, whose
/// strict upper part is written too (with the same symmetric values). n_threads as
/// gemm_parallel; the same bits for any count.
inline void syrk_lower(simd_level level, std::size_t n, std::size_t k, const float* x, std::size_t ldx, float* h,
                       std::size_t ldh, int n_threads) {
  constexpr std::size_t tw = 256, th = 768;
  struct piece {
    std::size_t r0, r1, c0, c1;
  };
  std::vector<piece> pieces;
  for (std::size_t c0 = 0; c0 < n; c0 += tw)
    for (std::size_t r0 = c0; r0 < n; r0 += th) pieces.push_back({r0, std::min(n, r0 + th), c0, std::min(n, c0 + tw)});
  const auto lx = static_cast<std::ptrdiff_t>(ldx), lh = static_cast<std::ptrdiff_t>(ldh);
  parallel_for(pieces.size(), 1, n_threads, [&](std::size_t p0, std::size_t p1) {
    for (std::size_t p = p0; p < p1; ++p) {
      const piece& q = pieces[p];
      const auto r0 = static_cast<std::ptrdiff_t>(q.r0), c0 = static_cast<std::ptrdiff_t>(q.c0);
      gemm(level, q.r1 - q.r0, q.c1 - q.c0, k, 1.0f, {x + r0, 1, lx}, {x + c0, lx, 1}, 1.0f,
           {h + r0 + c0 * lh, 1, lh});
    }
  });
}

SBGQ_END_NAMESPACE
