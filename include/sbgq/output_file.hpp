// Atomic output files: write to a temporary file beside the target, then rename.
//
// A failure (an error, an exception, a crash, a full disk) never leaves a half-written
// file under the final name, and never clobbers an existing good file: until commit()
// the data lives in "<path>.tmp.XXXXXX", which the destructor removes if commit() was not
// reached. Writes are buffered; the byte count is tracked for offset bookkeeping.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base.hpp"
#include "error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#endif

SBGQ_BEGIN_NAMESPACE

class output_file {
 public:
  output_file() = default;
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  output_file(output_file&& o) noexcept { swap(o); }
  output_file& operator=(output_file&& o) noexcept {
    if (this != &o) {
      output_file t(std::move(o));
      swap(t);
    }
    return *this;
  }
  ~output_file() { abandon(); }

  /// Creates the temporary file for `path` (same directory, so rename is atomic).
  static result<output_file> create(const std::string& path) {
    output_file f;
    f.path_ = path;
    std::string tmpl = path + ".tmp.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    if (fd < 0) return sys_error("cannot create a temporary file for '" + path + "'");
    ::fchmod(fd, 0644);
    f.tmp_path_.assign(buf.data());
    f.fp_ = ::fdopen(fd, "wb");
    if (!f.fp_) {
      ::close(fd);
      ::unlink(f.tmp_path_.c_str());
      return sys_error("cannot open '" + f.tmp_path_ + "'");
    }
    std::setvbuf(f.fp_, nullptr, _IOFBF, 1 << 20);
    return f;
  }

  result<void> write(std::span<const std::byte> bytes) {
    if (!fp_) return error(error_code::io_error, "file", "write to a closed output file");
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), fp_) != bytes.size())
      return sys_error("write to '" + tmp_path_ + "' failed");
    written_ += bytes.size();
    return {};
  }
  result<void> write(const void* p, std::size_t n) {
    return write(std::span<const std::byte>(static_cast<const std::byte*>(p), n));
  }
  /// Writes n zero bytes (padding).
  result<void> write_zeros(std::size_t n) {
    static constexpr std::byte zeros[64] = {};
    while (n > 0) {
      const std::size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
      SBGQ_TRY_VOID(write(zeros, k));
      n -= k;
    }
    return {};
  }

  std::uint64_t bytes_written() const noexcept { return written_; }
  const std::string& path() const noexcept { return path_; }

  /// Flushes, syncs and renames the temporary file to the final path.
  result<void> commit() {
    if (!fp_) return error(error_code::io_error, "file", "commit of a closed output file");
    if (std::fflush(fp_) != 0) return sys_error("flush of '" + tmp_path_ + "' failed");
    ::fsync(::fileno(fp_));
    if (std::fclose(fp_) != 0) {
      fp_ = nullptr;
      return sys_error("close of '" + tmp_path_ + "' failed");
    }
    fp_ = nullptr;
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
      return sys_error("cannot rename '" + tmp_path_ + "' to '" + path_ + "'");
    tmp_path_.clear();
    return {};
  }

  /// Drops the temporary file (also done by the destructor when not committed).
  void abandon() noexcept {
    if (fp_) std::fclose(fp_);
    fp_ = nullptr;
    if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }

 private:
  static error sys_error(const std::string& what) {
    return error(error_code::io_error, "file", what + ": " + std::strerror(errno));
  }
  void swap(output_file& o) noexcept {
    std::swap(fp_, o.fp_);
    std::swap(path_, o.path_);
    std::swap(tmp_path_, o.tmp_path_);
    std::swap(written_, o.written_);
  }

  std::FILE* fp_ = nullptr;
  std::string path_, tmp_path_;
  std::uint64_t written_ = 0;
};

SBGQ_END_NAMESPACE
