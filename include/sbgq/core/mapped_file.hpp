// RAII read-only memory map of a whole file (POSIX).
//
// Tensor data of safetensors and GGUF files is used in place through this map, so a
// model of any size costs address space, not resident memory: pages are read on demand
// and can be dropped by the kernel. Thread-safe for concurrent reads.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "base.hpp"
#include "error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define SBGQ_HAVE_MMAP 1
#else
#define SBGQ_HAVE_MMAP 0
#endif

SBGQ_BEGIN_NAMESPACE

class mapped_file {
 public:
  mapped_file() = default;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      mapped_file t(std::move(o));
      swap(t);
    }
    return *this;
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() { reset(); }

  /// Maps `path` read-only. Errors: io_error (with errno text) if it cannot be opened,
  /// is not a regular file, or cannot be mapped. An empty file maps to an empty span.
  static result<mapped_file> open(const std::string& path) {
#if SBGQ_HAVE_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sys_error("cannot open '" + path + "'");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      auto e = sys_error("cannot stat '" + path + "'");
      ::close(fd);
      return e;
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return error(error_code::io_error, "file", "'" + path + "' is not a regular file");
    }
    mapped_file m;
    m.path_ = path;
    m.size_ = static_cast<std::size_t>(st.st_size);
    if (m.size_ > 0) {
      void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        auto e = sys_error("cannot mmap '" + path + "'");
        ::close(fd);
        return e;
      }
      m.data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
    return m;
#else
    return error(error_code::unsupported, "file", "memory mapping is not implemented on this platform");
#endif
  }

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  /// Tells the kernel a range will be read soon / is no longer needed (both advisory).
  void will_need(std::size_t offset, std::size_t len) const noexcept { advise(offset, len, true); }
  void dont_need(std::size_t offset, std::size_t len) const noexcept { advise(offset, len, false); }

 private:
  static error sys_error(const std::string& what) {
    return error(error_code::io_error, "file", what + ": " + std::strerror(errno));
  }
  void advise(std::size_t offset, std::size_t len, bool need) const noexcept {
#if SBGQ_HAVE_MMAP
    if (!data_ || offset >= size_) return;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t start = offset / page * page;
    len = std::min(len + (offset - start), size_ - start);
    ::madvise(const_cast<std::byte*>(data_) + start, len, need ? MADV_WILLNEED : MADV_DONTNEED);
#else
    (void)offset; (void)len; (void)need;
#endif
  }
  void reset() noexcept {
#if SBGQ_HAVE_MMAP
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
#endif
    data_ = nullptr;
    size_ = 0;
  }
  void swap(mapped_file& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(path_, o.path_);
  }

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

/// Drops the pages of `s`, a range inside a read-only file mapping, from this process's
/// resident set (they stay in the page cache), so streaming over a large mapped file keeps
/// memory bounded, as llama.cpp unmaps each weight once used. Only whole pages inside the
/// range are dropped. Advisory: failures are ignored. Precondition: `s` lies in a
/// read-only file mapping (never in anonymous memory, whose contents would be lost).
inline void release_mapped_pages(std::span<const std::byte> s) noexcept {
#if SBGQ_HAVE_MMAP
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page <= 0 || s.empty()) return;
  const auto p = reinterpret_cast<std::uintptr_t>(s.data());
  const auto pg = static_cast<std::uintptr_t>(page);
  const std::uintptr_t begin = (p + pg - 1) & ~(pg - 1);
  const std::uintptr_t end = (p + s.size()) & ~(pg - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
  (void)s;
#endif
}

/// Peak resident set size of this process in bytes (Linux /proc/self/status VmHWM), 0
/// where the platform does not report it. For reports of long runs.
inline std::uint64_t peak_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  unsigned long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %lu kB", &kb) == 1) break;
  std::fclose(f);
  return static_cast<std::uint64_t>(kb) * 1024;
}

SBGQ_END_NAMESPACE
