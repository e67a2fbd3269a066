// Shared body of the AVX2 and AVX-512 K-quant search helpers (no include guard: it is
// included once inside each target namespace by kernels/<target>/k_quant_common.hpp,
// after that target's codec_vec.hpp; it includes nothing itself).
//
// Lane mapping: lane i runs the reference helper (codec/k_quant_common.hpp) for group i
// of cv::lanes independent groups. The group's values arrive transposed: x[k] holds
// element k of every lane's group. Each lane performs the reference's float operations
// in the reference's order (sums in index order, the same grouping of products, strict
// comparisons); per-lane branches become masks, and values a lane would not compute in
// the reference (a flat group's search) are computed and then discarded by a select.

namespace kq_kernel {

/// Reference sum over the group of x[k]^2, k in order, per lane (sum_squares).
template <int N>
inline cv::vf sum_squares(const cv::vf* x) {
  cv::vf s(0.0f);
  for (int k = 0; k < N; ++k) s = s + x[k] * x[k];
  return s;
}

/// H3, detail::codec::make_qkx_quants on N values per lane (weights w, levels 0..nmax).
/// Returns the scale; L[k] gets the levels, the_min the (negated, >= 0) min.
template <int N, bool UseMad>
inline cv::vf make_qkx_quants(int nmax, const cv::vf* x, const cv::vf* w, cv::vi* L, cv::vf& the_min, float rmin,
                              float rdelta, int nstep) {
  cv::vf min = x[0], max = x[0];
  cv::vf sum_w = w[0];
  cv::vf sum_x = sum_w * x[0];
  for (int i = 1; i < N; ++i) {
    min = cv::select(x[i] < min, x[i], min);
    max = cv::select(x[i] > max, x[i], max);
    sum_w = sum_w + w[i];
    sum_x = sum_x + w[i] * x[i];
  }
  min = cv::select(min > cv::vf(0.0f), cv::vf(0.0f), min);
  const cv::vm flat = max == min;  // the reference returns early: L = 0, scale 0
  const cv::vf flat_min = min;
  const cv::vf fnmax(static_cast<float>(nmax));
  const cv::vi zero(0), top(nmax);
  cv::vf iscale = fnmax / (max - min);
  cv::vf scale = cv::vf(1.0f) / iscale;
  cv::vf best_error(0.0f);
  for (int i = 0; i < N; ++i) {
    L[i] = cv::max(zero, cv::min(top, cv::nearest_int(iscale * (x[i] - min))));
    cv::vf diff = scale * cv::to_float(L[i]) + min - x[i];
    diff = UseMad ? cv::abs(diff) : diff * diff;
    best_error = best_error + w[i] * diff;
  }
  cv::vi Laux[N];
  for (int is = 0; is <= nstep; ++is) {
    iscale = cv::vf(rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    cv::vf sum_l(0.0f), sum_l2(0.0f), sum_xl(0.0f);
    for (int i = 0; i < N; ++i) {
      Laux[i] = cv::max(zero, cv::min(top, cv::nearest_int(iscale * (x[i] - min))));
      const cv::vf fl = cv::to_float(Laux[i]);
      sum_l = sum_l + w[i] * fl;
      sum_l2 = sum_l2 + w[i] * fl * fl;
      sum_xl = sum_xl + w[i] * fl * x[i];
    }
    const cv::vf D = sum_w * sum_l2 - sum_l * sum_l;
    const cv::vm solvable = D > cv::vf(0.0f);
    if (!cv::any(solvable)) continue;
    cv::vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    cv::vf this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    const cv::vm pos_min = this_min > cv::vf(0.0f);
    this_min = cv::select(pos_min, cv::vf(0.0f), this_min);
    this_scale = cv::select(pos_min, sum_xl / sum_l2, this_scale);
    cv::vf cur_error(0.0f);
    for (int i = 0; i < N; ++i) {
      cv::vf diff = this_scale * cv::to_float(Laux[i]) + this_min - x[i];
      diff = UseMad ? cv::abs(diff) : diff * diff;
      cur_error = cur_error + w[i] * diff;
    }
    const cv::vm accept = solvable & (cur_error < best_error);
    if (!cv::any(accept)) continue;
    for (int i = 0; i < N; ++i) L[i] = cv::select(accept, Laux[i], L[i]);
    best_error = cv::select(accept, cur_error, best_error);
    scale = cv::select(accept, this_scale, scale);
    min = cv::select(accept, this_min, min);
  }
  for (int i = 0; i < N; ++i) L[i] = cv::select(flat, zero, L[i]);
  the_min = -cv::select(flat, flat_min, min);
  return cv::select(flat, cv::vf(0.0f), scale);
}

/// One fit of H1: levels for iscale into Lc (offset by off), sums in index order.
template <int N>
SBGQ_CV_INLINE void qx_fit(const cv::vf* x, const cv::vf* w, cv::vf iscale, cv::vi lo, cv::vi hi, cv::vi off, cv::vi* Lc,
                           cv::vf& sumlx, cv::vf& suml2) {
  sumlx = cv::vf(0.0f);
  suml2 = cv::vf(0.0f);
  for (int i = 0; i < N; ++i) {
    const cv::vi l = cv::max(lo, cv::min(hi, cv::nearest_int(iscale * x[i])));
    Lc[i] = l + off;
    const cv::vf fl = cv::to_float(l);
    sumlx = sumlx + w[i] * x[i] * fl;
    suml2 = suml2 + w[i] * fl * fl;
  }
}

/// H1, detail::codec::make_qx_quants on N values per lane, levels -nmax..nmax-1 stored
/// offset (L = l + nmax; 0 for an all-zero group). w: the error weights, already the
/// reference's `qw ? qw[i] : x[i] * x[i]`. Returns the scale.
template <int N>
inline cv::vf make_qx_quants(int nmax, const cv::vf* x, const cv::vf* w, cv::vi* L) {
  cv::vf max(0.0f), amax(0.0f);
  for (int i = 0; i < N; ++i) {
    const cv::vf ax = cv::abs(x[i]);
    const cv::vm gt = ax > amax;
    amax = cv::select(gt, ax, amax);
    max = cv::select(gt, x[i], max);
  }
  const cv::vm zero_group = amax < cv::vf(detail::codec::group_max_eps);
  const cv::vi lo(-nmax), hi(nmax - 1), off(nmax);
  cv::vi Lc[N];
  cv::vf sumlx, suml2;
  qx_fit<N>(x, w, cv::vf(static_cast<float>(-nmax)) / max, lo, hi, off, Lc, sumlx, suml2);
  for (int i = 0; i < N; ++i) L[i] = Lc[i];
  cv::vf scale = cv::select(suml2 != cv::vf(0.0f), sumlx / suml2, cv::vf(0.0f));
  cv::vf best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float num = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is));
    qx_fit<N>(x, w, cv::vf(num) / max, lo, hi, off, Lc, sumlx, suml2);
    // The reference re-runs the same fit to store L; it reproduces Lc and the sums.
    const cv::vm better = (suml2 > cv::vf(0.0f)) & (sumlx * sumlx > best * suml2);
    if (!cv::any(better)) continue;
    for (int i = 0; i < N; ++i) L[i] = cv::select(better, Lc[i], L[i]);
    scale = cv::select(better, sumlx / suml2, scale);
    best = cv::select(better, scale * sumlx, best);
  }
  for (int i = 0; i < N; ++i) L[i] = cv::select(zero_group, cv::vi(0), L[i]);
  return cv::select(zero_group, cv::vf(0.0f), scale);
}

/// H2, detail::codec::make_q3_quants on N values per lane (weights x^2, levels
/// -nmax..nmax-1 stored offset by +nmax; 0 for an all-zero group). The coordinate
/// descent visits i in order within each lane; a lane stops after its first pass without
/// a change (the reference's break), the vector after all lanes have stopped.
template <int N>
inline cv::vf make_q3_quants(int nmax, const cv::vf* x, cv::vi* L) {
  cv::vf max(0.0f), amax(0.0f);
  for (int i = 0; i < N; ++i) {
    const cv::vf ax = cv::abs(x[i]);
    const cv::vm gt = ax > amax;
    amax = cv::select(gt, ax, amax);
    max = cv::select(gt, x[i], max);
  }
  const cv::vm zero_group = amax < cv::vf(detail::codec::group_max_eps);
  const cv::vi lo(-nmax), hi(nmax - 1);
  const cv::vf iscale = cv::vf(static_cast<float>(-nmax)) / max;
  cv::vf sumlx(0.0f), suml2(0.0f);
  for (int i = 0; i < N; ++i) {
    L[i] = cv::max(lo, cv::min(hi, cv::nearest_int(iscale * x[i])));
    const cv::vf w = x[i] * x[i];
    const cv::vf fl = cv::to_float(L[i]);
    sumlx = sumlx + w * x[i] * fl;
    suml2 = suml2 + w * fl * fl;
  }
  cv::vm active = ~zero_group;
  for (int itry = 0; itry < 5 && cv::any(active); ++itry) {
    cv::vm changed = cv::vf(0.0f) != cv::vf(0.0f);  // all false
    for (int i = 0; i < N; ++i) {
      const cv::vf w = x[i] * x[i];
      const cv::vf li = cv::to_float(L[i]);
      cv::vf slx = sumlx - w * x[i] * li;
      const cv::vm open = active & (slx > cv::vf(0.0f));
      cv::vf sl2 = suml2 - w * li * li;
      const cv::vi new_l = cv::max(lo, cv::min(hi, cv::nearest_int(x[i] * sl2 / slx)));
      const cv::vm differs = open & ~(new_l == L[i]);
      const cv::vf fl = cv::to_float(new_l);
      slx = slx + w * x[i] * fl;
      sl2 = sl2 + w * fl * fl;
      const cv::vm take = differs & (sl2 > cv::vf(0.0f)) & (slx * slx * suml2 > sumlx * sumlx * sl2);
      L[i] = cv::select(take, new_l, L[i]);
      sumlx = cv::select(take, slx, sumlx);
      suml2 = cv::select(take, sl2, suml2);
      changed = changed | take;
    }
    active = active & changed;
  }
  const cv::vi off(nmax);
  for (int i = 0; i < N; ++i) L[i] = cv::select(zero_group, cv::vi(0), L[i] + off);
  return cv::select(zero_group, cv::vf(0.0f), cv::select(suml2 > cv::vf(0.0f), sumlx / suml2, cv::vf(0.0f)));
}

/// Writes lane-major levels (L[k] holds element k of every lane's group of N) to bytes
/// in group order: out[N * lane + k].
template <int N>
inline void store_levels(const cv::vi* L, std::uint8_t* out) {
  alignas(64) std::int32_t t[N][cv::lanes];
  for (int k = 0; k < N; ++k) cv::store(t[k], L[k]);
  for (int lane = 0; lane < cv::lanes; ++lane)
    for (int k = 0; k < N; ++k) out[N * lane + k] = static_cast<std::uint8_t>(t[k][lane]);
}

}  // namespace kq_kernel

/// Bit packing of the K-quant levels with 32-byte integer ops (AVX2 instructions, valid
/// in both target regions): the same integers as the reference's scalar pack_* loops,
/// without their per-weight branches (Q3_K's and Q5_K's high-bit tests mispredict about
/// half the time). L: 256 levels of one super-block in weight order.
namespace kq_pack {

inline __m256i load32(const std::uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void store32(std::uint8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
/// Byte-wise v << s for bytes that stay below 256 (the 16-bit shift cannot carry over).
inline __m256i shl(__m256i v, int s) { return _mm256_sll_epi16(v, _mm_cvtsi32_si128(s)); }
/// Byte-wise (v >> s) & mask.
inline __m256i shr_and(__m256i v, int s, int mask) {
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(s)), _mm256_set1_epi8(static_cast<char>(mask)));
}

/// Q2_K / Q3_K low bits (levels 0..3): qs[32h + l] = L[128h + l + 32g] << 2g, g = 0..3.
inline void two_bit(const std::uint8_t* L, std::uint8_t* qs) {
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* Lh = L + 128 * h;
    store32(qs + 32 * h, _mm256_or_si256(_mm256_or_si256(load32(Lh), shl(load32(Lh + 32), 2)),
                                         _mm256_or_si256(shl(load32(Lh + 64), 4), shl(load32(Lh + 96), 6))));
  }
}

/// Q2_K (levels 0..3).
inline void q2_k(const std::uint8_t* L, std::uint8_t* qs) { two_bit(L, qs); }

/// Q3_K (levels 0..7): bit 2 of weight i -> bit i / 32 of hmask[i % 32]; low 2 bits as Q2_K.
inline void q3_k(const std::uint8_t* L, std::uint8_t* hmask, std::uint8_t* qs) {
  alignas(32) std::uint8_t low[256];
  __m256i hm = _mm256_setzero_si256();
  for (int t = 0; t < 8; ++t) {
    const __m256i v = load32(L + 32 * t);
    hm = _mm256_or_si256(hm, shl(shr_and(v, 2, 1), t));
    store32(low + 32 * t, _mm256_and_si256(v, _mm256_set1_epi8(3)));
  }
  store32(hmask, hm);
  two_bit(low, qs);
}

/// Q4_K (levels 0..15): qs[32c + l] = L[64c + l] | L[64c + 32 + l] << 4.
inline void q4_k(const std::uint8_t* L, std::uint8_t* qs) {
  for (int c = 0; c < 4; ++c) store32(qs + 32 * c, _mm256_or_si256(load32(L + 64 * c), shl(load32(L + 64 * c + 32), 4)));
}

/// Q5_K (levels 0..31): low nibbles as Q4_K; bit 4 of L[64c + l] -> bit 2c of qh[l], of
/// L[64c + 32 + l] -> bit 2c + 1.
inline void q5_k(const std::uint8_t* L, std::uint8_t* qh, std::uint8_t* qs) {
  __m256i h = _mm256_setzero_si256();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {
    const __m256i a = load32(L + 64 * c), b = load32(L + 64 * c + 32);
    h = _mm256_or_si256(h, _mm256_or_si256(shl(shr_and(a, 4, 1), 2 * c), shl(shr_and(b, 4, 1), 2 * c + 1)));
    store32(qs + 32 * c, _mm256_or_si256(_mm256_and_si256(a, m4), shl(_mm256_and_si256(b, m4), 4)));
  }
  store32(qh, h);
}

/// Q6_K (levels 0..63), blocks doc 5: per half h, q_g = L[128h + 32g + l];
/// ql[64h + l] = q0 & 15 | (q2 & 15) << 4, ql[64h + 32 + l] = q1 & 15 | (q3 & 15) << 4,
/// qh[32h + l] = (q0 >> 4) | (q1 >> 4) << 2 | (q2 >> 4) << 4 | (q3 >> 4) << 6.
inline void q6_k(const std::uint8_t* L, std::uint8_t* ql, std::uint8_t* qh) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* Lh = L + 128 * h;
    const __m256i q0 = load32(Lh), q1 = load32(Lh + 32), q2 = load32(Lh + 64), q3 = load32(Lh + 96);
    store32(ql + 64 * h, _mm256_or_si256(_mm256_and_si256(q0, m4), shl(_mm256_and_si256(q2, m4), 4)));
    store32(ql + 64 * h + 32, _mm256_or_si256(_mm256_and_si256(q1, m4), shl(_mm256_and_si256(q3, m4), 4)));
    store32(qh + 32 * h, _mm256_or_si256(_mm256_or_si256(shr_and(q0, 4, 3), shl(shr_and(q1, 4, 3), 2)),
                                         _mm256_or_si256(shl(shr_and(q2, 4, 3), 4), shl(shr_and(q3, 4, 3), 6))));
  }
}

}  // namespace kq_pack
