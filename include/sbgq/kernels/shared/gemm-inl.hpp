// Shared body of the AVX2 and AVX-512 matrix-product micro-kernels (no include guard:
// included once inside each target namespace by kernels/<target>/gemm.hpp, after that
// target has defined its `gemm_vec` lane type and its tile shape `gemm_mr`, `gemm_nv`; it
// includes nothing itself).
//
// The kernel computes one MR x (NV * lanes) tile of C += A_panel * B_panel from the packed
// panels of linalg/gemm.hpp (A: MR values per k, B: NR values per k), keeping the whole
// tile in MR * NV vector accumulators: per k, NV loads of B, MR broadcasts of A and
// MR * NV fused multiply-adds.
//
// Why every level gives the same bits (and so does the scalar reference): each output
// element lives in one lane of one accumulator, which starts at +0 and takes
// fma(a_t, b_t, acc) for t = 0..kc-1 in order; the tile is then added to C with one
// IEEE addition per element. The scalar reference (linalg/gemm.hpp, ref::gemm_micro) does
// exactly that with std::fma, so neither MR, NV nor the lane count changes a result.

namespace gemm_kernel {

/// C[i][j] += sum_t ap[t * MR + i] * bp[t * NR + j] for i < mr, j < nr (NR = NV * lanes).
/// C(i, j) is at c[i * rs + j * cs]; the vector store is used when the tile is full and
/// rows are contiguous (cs == 1), otherwise the tile goes through a small buffer.
template <int MR, int NV>
inline void micro(std::size_t kc, const float* ap, const float* bp, float* c, std::ptrdiff_t rs, std::ptrdiff_t cs,
                  int mr, int nr) {
  constexpr int L = gemm_vec::lanes, NR = NV * L;
  typename gemm_vec::type acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = gemm_vec::zero();
  for (std::size_t t = 0; t < kc; ++t) {
    typename gemm_vec::type b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = gemm_vec::load(bp + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const typename gemm_vec::type a = gemm_vec::broadcast(ap + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = gemm_vec::fmadd(a, b[v], acc[i][v]);
    }
    ap += MR;
    bp += NR;
  }
  if (mr == MR && nr == NR && cs == 1) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * rs + v * L;
        gemm_vec::store(p, gemm_vec::add(gemm_vec::load(p), acc[i][v]));
      }
    return;
  }
  // (Loops over acc are fully unrolled everywhere: with one runtime index GCC keeps acc in
  // memory and stores it on every k.)
  alignas(64) float tile[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) gemm_vec::store(tile + i * NR + v * L, acc[i][v]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * rs + j * cs] += tile[i * NR + j];
}

}  // namespace gemm_kernel

/// This level's micro-kernel: gemm_mr x gemm_nr tiles.
inline constexpr int gemm_nr = gemm_nv * gemm_vec::lanes;
inline void gemm_micro(std::size_t kc, const float* ap, const float* bp, float* c, std::ptrdiff_t rs,
                       std::ptrdiff_t cs, int mr, int nr) {
  gemm_kernel::micro<gemm_mr, gemm_nv>(kc, ap, bp, c, rs, cs, mr, nr);
}
