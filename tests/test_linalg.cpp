// linalg/gemm.hpp and linalg/cholesky.hpp: the same bits at every SIMD level the CPU has
// (against the scalar reference), for any thread count, and the right values (against an
// f64 product / reconstruction).
#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <vector>

#include "sbgq/linalg/cholesky.hpp"
#include "sbgq/linalg/gemm.hpp"
#include "support/rng.hpp"

namespace {

using sbgq::simd_level;

std::vector<simd_level> levels() {
  std::vector<simd_level> out;
  for (auto l : {simd_level::scalar, simd_level::avx2, simd_level::avx512}) {
    if (l > sbgq::supported_simd_level()) {
      MESSAGE("skipped (unsupported by this CPU): " << sbgq::simd_level_name(l));
      continue;
    }
    out.push_back(l);
  }
  return out;
}

/// An m x n matrix stored row-major (rs = ld, cs = 1) or column-major (rs = 1, cs = ld) in
/// a buffer with padding (ld > the minimum), so strides are really used.
struct strided {
  std::size_t m, n;
  bool col_major;
  std::ptrdiff_t ld;
  std::vector<float> buf;
  strided(std::size_t m_, std::size_t n_, bool cm, std::uint64_t seed)
      : m(m_), n(n_), col_major(cm), ld(static_cast<std::ptrdiff_t>((cm ? m_ : n_) + 3)),
        buf(sbgq::test::rng(seed).normals(static_cast<std::size_t>(ld) * (cm ? n_ : m_) + 3)) {}
  std::ptrdiff_t rs() const { return col_major ? 1 : ld; }
  std::ptrdiff_t cs() const { return col_major ? ld : 1; }
  float at(std::size_t i, std::size_t j) const {
    return buf[static_cast<std::size_t>(static_cast<std::ptrdiff_t>(i) * rs() + static_cast<std::ptrdiff_t>(j) * cs())];
  }
  sbgq::gemm_operand in() const { return {buf.data(), rs(), cs()}; }
  sbgq::gemm_output out() { return {buf.data(), rs(), cs()}; }
};

}  // namespace

TEST_SUITE("linalg") {

TEST_CASE("gemm: every level gives the scalar reference's bits; values match an f64 product") {
  // Shapes around the tiles (6/12/4 rows, 16/32/4 columns) and the cache blocks (kc 256,
  // mc 144, nc 2048), strides of both majors, alpha and beta of every kind.
  struct shape {
    std::size_t m, n, k;
  };
  const shape shapes[] = {{1, 1, 1}, {5, 17, 3}, {13, 33, 257}, {145, 40, 300}, {30, 2050, 20}, {7, 9, 0}};
  std::uint64_t seed = 1;
  for (const shape& s : shapes)
    for (int majors = 0; majors < 8; ++majors)
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-1.0f, 1.0f}, std::pair{0.5f, 0.25f}}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(majors);
        CAPTURE(alpha);
        const strided a(s.m, s.k, majors & 1, ++seed), b(s.k, s.n, (majors >> 1) & 1, ++seed);
        const strided c0(s.m, s.n, (majors >> 2) & 1, ++seed);
        strided want = c0;
        sbgq::gemm(simd_level::scalar, s.m, s.n, s.k, alpha, a.in(), b.in(), beta, want.out());
        double worst = 0;
        for (std::size_t i = 0; i < s.m; ++i)
          for (std::size_t j = 0; j < s.n; ++j) {
            double e = beta * static_cast<double>(c0.at(i, j)), mag = std::fabs(e);
            for (std::size_t t = 0; t < s.k; ++t) {
              const double p = static_cast<double>(alpha) * a.at(i, t) * b.at(t, j);
              e += p;
              mag += std::fabs(p);
            }
            worst = std::max(worst, std::fabs(want.at(i, j) - e) / std::max(mag, 1e-30));
          }
        CHECK(worst < 1e-5);
        // Padding (outside the m x n view) untouched.
        CHECK(want.buf.back() == c0.buf.back());
        for (simd_level l : levels()) {
          CAPTURE(sbgq::simd_level_name(l));
          strided got = c0;
          sbgq::gemm(l, s.m, s.n, s.k, alpha, a.in(), b.in(), beta, got.out());
          CHECK(got.buf == want.buf);
          for (int threads : {2, 3}) {
            strided par = c0;
            sbgq::gemm_parallel(l, s.m, s.n, s.k, alpha, a.in(), b.in(), beta, par.out(), threads);
            CHECK(par.buf == want.buf);
          }
        }
      }
}

TEST_CASE("gemm_parallel shares packed blocks between threads without changing a bit") {
  const std::size_t m = 1600, n = 4200, k = 300;  // 12 row blocks, 2 column blocks of 4096, 2 k blocks
  const strided a(m, k, false, 5), b(k, n, true, 6);
  for (simd_level l : levels()) {
    CAPTURE(sbgq::simd_level_name(l));
    strided one(m, n, false, 7), two = one;
    sbgq::gemm(l, m, n, k, 1.0f, a.in(), b.in(), 1.0f, one.out());
    sbgq::gemm_parallel(l, m, n, k, 1.0f, a.in(), b.in(), 1.0f, two.out(), 2);
    CHECK(one.buf == two.buf);
  }
}

TEST_CASE("syrk_lower: the lower triangle of X^T X, the same at every level and thread count") {
  const std::size_t n = 600, k = 700, ldx = 603;  // 2 column tiles of 512, 3 k blocks
  const auto x = sbgq::test::rng(9).normals(k * ldx);
  Eigen::MatrixXf want = Eigen::MatrixXf::Constant(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n), 0.5f);
  const sbgq::gemm_operand xo{x.data(), static_cast<std::ptrdiff_t>(ldx), 1};
  sbgq::syrk_lower(simd_level::scalar, n, k, 1.0f, xo, want.data(), n, 1);
  double worst = 0;
  for (std::size_t j = 0; j < n; j += 7)
    for (std::size_t i = j; i < n; i += 3) {
      double e = 0.5, mag = 0.5;
      for (std::size_t t = 0; t < k; ++t) {
        const double p = static_cast<double>(x[t * ldx + i]) * x[t * ldx + j];
        e += p;
        mag += std::fabs(p);
      }
      worst = std::max(worst, std::fabs(want(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) - e) / mag);
    }
  CHECK(worst < 1e-5);
  // Outside the diagonal tiles the strict upper triangle is untouched.
  CHECK(want(0, 599) == 0.5f);
  CHECK(want(511, 512) == 0.5f);
  for (simd_level l : levels())
    for (int threads : {1, 2}) {
      CAPTURE(sbgq::simd_level_name(l));
      CAPTURE(threads);
      Eigen::MatrixXf got = Eigen::MatrixXf::Constant(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n), 0.5f);
      sbgq::syrk_lower(l, n, k, 1.0f, xo, got.data(), n, threads);
      CHECK(got == want);
    }
}

TEST_CASE("cholesky_lower: L L^T = A, the same bits at every level and thread count; indefinite -> false") {
  const auto n = static_cast<Eigen::Index>(700);  // 3 panels of 256, the last partial
  const auto g = sbgq::test::rng(11).normals(static_cast<std::size_t>(n * 900));
  const Eigen::Map<const Eigen::MatrixXf> gm(g.data(), n, 900);
  const Eigen::MatrixXd ad = gm.cast<double>() * gm.cast<double>().transpose() / 900.0 +
                             0.01 * Eigen::MatrixXd::Identity(n, n);
  const Eigen::MatrixXf a = ad.cast<float>();
  Eigen::MatrixXf want = a;
  REQUIRE(sbgq::cholesky_lower(want, 1, simd_level::scalar));
  const Eigen::MatrixXd l = want.cast<double>().triangularView<Eigen::Lower>();
  const double rel = (l * l.transpose() - a.cast<double>()).norm() / a.cast<double>().norm();
  MESSAGE("||L L^T - A|| / ||A|| = " << rel);
  CHECK(rel < 1e-5);
  for (simd_level lv : levels())
    for (int threads : {1, 2, 3}) {
      CAPTURE(sbgq::simd_level_name(lv));
      CAPTURE(threads);
      Eigen::MatrixXf got = a;
      REQUIRE(sbgq::cholesky_lower(got, threads, lv));
      CHECK(Eigen::MatrixXf(got.triangularView<Eigen::Lower>()) == Eigen::MatrixXf(want.triangularView<Eigen::Lower>()));
    }
  Eigen::MatrixXf bad = a;
  bad(600, 600) = -1.0f;  // in the third panel: found after two trailing updates
  CHECK_FALSE(sbgq::cholesky_lower(bad, 2));
}

}  // TEST_SUITE
