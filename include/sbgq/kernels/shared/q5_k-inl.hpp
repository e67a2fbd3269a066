// Shared body of the AVX2 and AVX-512 Q5_K quantizers (no include guard: included once
// inside each target namespace by kernels/<target>/q5_k.hpp, after q4_k.hpp). Q5_K is
// Q4_K's search with nmax 31 and the ref-path H3 parameters (-0.5, 0.1, 15)
// (algorithms doc 9); only the packing differs.

/// Bit-identical to ref::quantize_q5_k.
inline void quantize_q5_k(std::span<const float> x, std::span<block_q5_k> y,
                          std::span<const float> weights = {}) noexcept {
  SBGQ_DASSERT(x.size() == y.size() * qk_k);
  SBGQ_DASSERT(weights.empty() || weights.size() == x.size());
  k45_kernel::quantize_row(x, y, weights, 31, -0.5f, 15, [](const std::uint8_t* L, block_q5_k& out) {
    kq_pack::q5_k(L, out.qh, out.qs);
  });
}
