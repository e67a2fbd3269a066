// A small thread pool and parallel_for with deterministic results.
//
// Work is split into chunks of a fixed grain, independent of the number of threads;
// threads claim chunks dynamically. Because each index is processed exactly once by
// code that does not depend on which thread runs it, results are bit-identical for any
// thread count, as long as the body writes only its own indices (reductions must be
// done per chunk and combined in chunk order by the caller -- see parallel_reduce).
//
// Thread-safety: one parallel_for at a time per pool (calls are serialised by a mutex);
// a body must not call parallel_for on the same pool (it runs inline instead).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base.hpp"

SBGQ_BEGIN_NAMESPACE

class thread_pool {
 public:
  /// A pool with n_threads workers in total, the calling thread included
  /// (n_threads <= 0: std::thread::hardware_concurrency()).
  explicit thread_pool(int n_threads = 0) {
    if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n_threads_ = n_threads;
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const noexcept { return n_threads_; }

  /// Calls body(begin, end) for consecutive chunks [begin, end) of [0, n), each at most
  /// `grain` long, on all threads; returns when every chunk is done. The first exception
  /// thrown by a body is rethrown here (remaining chunks are skipped).
  void parallel_for(std::size_t n, std::size_t grain,
                    const std::function<void(std::size_t, std::size_t)>& body) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t n_chunks = (n + grain - 1) / grain;
    if (n_threads_ == 1 || n_chunks == 1 || in_pool_body()) {
      for (std::size_t c = 0; c < n_chunks; ++c) body(c * grain, std::min(n, (c + 1) * grain));
      return;
    }
    std::lock_guard<std::mutex> call_lock(call_m_);
    {
      std::lock_guard<std::mutex> lk(m_);
      body_ = &body;
      n_ = n;
      grain_ = grain;
      n_chunks_ = n_chunks;
      next_.store(0);
      error_ = nullptr;
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    run_chunks();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [this] { return active_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static bool& in_pool_body() noexcept {
    thread_local bool flag = false;
    return flag;
  }
  void run_chunks() {
    in_pool_body() = true;
    for (;;) {
      const std::size_t c = next_.fetch_add(1);
      if (c >= n_chunks_) break;
      try {
        (*body_)(c * grain_, std::min(n_, (c + 1) * grain_));
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_chunks_);
      }
    }
    in_pool_body() = false;
  }
  void worker_loop(int) {
    std::size_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      run_chunks();
      std::lock_guard<std::mutex> lk(m_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_m_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  bool stop_ = false;
  std::size_t generation_ = 0;
  const std::function<void(std::size_t, std::size_t)>* body_ = nullptr;
  std::size_t n_ = 0, grain_ = 1, n_chunks_ = 0;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
  int active_ = 0;
};

/// Runs body(begin, end) over [0, n) in chunks of `grain` on `n_threads` threads
/// (<= 0: all hardware threads). Pools are cached per thread count, so repeated calls do
/// not create threads. Deterministic as described at the top of this file.
inline void parallel_for(std::size_t n, std::size_t grain, int n_threads,
                         const std::function<void(std::size_t, std::size_t)>& body) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (n_threads == 1) {
    grain = std::max<std::size_t>(grain, 1);
    for (std::size_t b = 0; b < n; b += grain) body(b, std::min(n, b + grain));
    return;
  }
  static std::mutex pools_m;
  static std::vector<std::unique_ptr<thread_pool>> pools;  // index = n_threads
  thread_pool* pool = nullptr;
  {
    std::lock_guard<std::mutex> lk(pools_m);
    if (pools.size() <= static_cast<std::size_t>(n_threads)) pools.resize(static_cast<std::size_t>(n_threads) + 1);
    auto& p = pools[static_cast<std::size_t>(n_threads)];
    if (!p) p = std::make_unique<thread_pool>(n_threads);
    pool = p.get();
  }
  pool->parallel_for(n, grain, body);
}

SBGQ_END_NAMESPACE
