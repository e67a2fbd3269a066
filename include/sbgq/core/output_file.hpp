// Atomic output files: write to a temporary file beside the target, then rename.
//
// A failure (an error, an exception, a crash, a full disk) never leaves a half-written
// file under the final name, and never clobbers an existing good file: until commit()
// the data lives in "<path>.tmp.XXXXXX", which the destructor removes if commit() was not
// reached. Writes are buffered; the byte count is tracked for offset bookkeeping.
//
// What is at the output path is respected: a symbolic link is written through (the file
// it points to is replaced, the link stays), and anything that is not a regular file (a
// directory, a device such as /dev/null, a FIFO, a socket) is refused rather than replaced
// by the rename. check_output_not_input() lets a driver refuse, before any work, an output
// that is one of its inputs (or a file of an input directory, such as a shard).
//
// Signals: a destructor does not run when the process is killed, so every live temporary
// path is also kept in a fixed, process-wide registry (static buffers claimed with atomics;
// nothing is allocated or locked there). remove_temporary_outputs() unlinks them and is
// async-signal-safe. The library installs no signal handler by itself; an application
// opts in with install_output_cleanup_handlers() (SIGINT, SIGTERM, SIGHUP, SIGXFSZ), or
// calls remove_temporary_outputs() from its own handler.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base.hpp"
#include "error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <dirent.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <csignal>
#endif

SBGQ_BEGIN_NAMESPACE

namespace detail::temp_registry {

inline constexpr std::size_t n_slots = 64;        ///< live temporary files tracked at once
inline constexpr std::size_t path_capacity = 4096;  ///< longest tracked path + 1 (PATH_MAX)

/// free -> claimed (being filled or emptied) -> live; a signal handler marks a live slot
/// busy while it unlinks the path, so its owner does not reuse the buffer meanwhile.
enum : int { slot_free = 0, slot_claimed = 1, slot_live = 2, slot_busy = 3 };

struct slot {
  std::atomic<int> state{slot_free};
  char path[path_capacity];
};
static_assert(std::atomic<int>::is_always_lock_free, "the signal path needs lock-free atomics");

inline slot slots[n_slots];

/// Records `path`; returns its slot, or -1 when the path is too long or all slots are taken
/// (the file is then only removed by its owner, not on a signal).
inline int add(const std::string& path) noexcept {
  if (path.size() >= path_capacity) return -1;
  for (std::size_t i = 0; i < n_slots; ++i) {
    int expected = slot_free;
    if (!slots[i].state.compare_exchange_strong(expected, slot_claimed, std::memory_order_acquire)) continue;
    std::memcpy(slots[i].path, path.c_str(), path.size() + 1);
    slots[i].state.store(slot_live, std::memory_order_release);
    return static_cast<int>(i);
  }
  return -1;
}

/// Forgets slot `i` (from add); waits while a signal handler on another thread uses it.
inline void remove(int i) noexcept {
  if (i < 0) return;
  auto& st = slots[static_cast<std::size_t>(i)].state;
  for (;;) {
    int expected = slot_live;
    if (st.compare_exchange_weak(expected, slot_free, std::memory_order_acq_rel)) return;
  }
}

}  // namespace detail::temp_registry

/// Unlinks every temporary output file of this process that is not committed or removed
/// yet. Async-signal-safe (atomics and unlink() only): meant for signal handlers. The
/// output_file objects stay valid; a later commit() then fails and abandon() is harmless.
inline void remove_temporary_outputs() noexcept {
  namespace tr = detail::temp_registry;
  for (auto& s : tr::slots) {
    int expected = tr::slot_live;
    if (!s.state.compare_exchange_strong(expected, tr::slot_busy, std::memory_order_acquire)) continue;
    ::unlink(s.path);
    s.state.store(tr::slot_live, std::memory_order_release);
  }
}

namespace detail::output {

/// What a non-regular file is, for messages.
inline const char* file_kind(mode_t m) noexcept {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

inline error sys_error(const std::string& what) {
  return error(error_code::io_error, "file", what + ": " + std::strerror(errno));
}

/// The file an output at `path` replaces: `path` itself, or the end of the chain of
/// symbolic links at `path` (relative links resolved against the link's directory).
/// Errors: invalid_argument when a directory, device, FIFO or socket is there, or the
/// links loop; io_error when a link cannot be read.
inline result<std::string> resolve_target(const std::string& path) {
  if (path.empty()) return error(error_code::invalid_argument, "file", "empty output path");
  std::string p = path;
  for (int hop = 0;; ++hop) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return p;  // nothing there yet; mkstemp reports a bad directory
    if (S_ISREG(st.st_mode)) return p;
    const std::string shown = p == path ? "'" + path + "'" : "'" + path + "' (a symbolic link to '" + p + "')";
    if (!S_ISLNK(st.st_mode))
      return error(error_code::invalid_argument, "file",
                   "output " + shown + " is " + file_kind(st.st_mode) + ", not a regular file: refusing to replace it");
    if (hop >= 40)
      return error(error_code::invalid_argument, "file", "output '" + path + "': more than 40 levels of symbolic links");
    std::vector<char> buf(temp_registry::path_capacity);
    const ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
    if (n < 0) return sys_error("cannot read the symbolic link '" + p + "'");
    if (n == 0 || static_cast<std::size_t>(n) >= buf.size())
      return error(error_code::invalid_argument, "file", "output '" + path + "': the symbolic link '" + p + "' is empty or too long");
    std::string next(buf.data(), static_cast<std::size_t>(n));
    if (next[0] != '/') {
      const std::size_t slash = p.rfind('/');
      if (slash != std::string::npos) next = p.substr(0, slash + 1) + next;
    }
    p = std::move(next);
  }
}

inline constexpr std::string_view temp_suffix = ".tmp.XXXXXX";

/// mkstemp's template for `target`: "<target>.tmp.XXXXXX", with the name part shortened
/// (at a UTF-8 character boundary) when it would pass the file system's name limit.
/// Errors: invalid_argument when the target's own name is already too long.
inline result<std::string> temp_template(const std::string& target) {
  const std::size_t slash = target.rfind('/');
  const std::string dir = slash == std::string::npos ? std::string() : target.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
  long name_max = ::pathconf(dir.empty() ? "." : dir.c_str(), _PC_NAME_MAX);
  if (name_max < 32 || name_max > 4096) name_max = 255;
  const auto limit = static_cast<std::size_t>(name_max);
  if (base.size() > limit)
    return error(error_code::invalid_argument, "file",
                 "output '" + target + "': the name is " + std::to_string(base.size()) +
                     " bytes, longer than the file system's limit of " + std::to_string(limit));
  if (base.size() + temp_suffix.size() > limit) {
    std::size_t keep = limit - temp_suffix.size();
    while (keep > 0 && (static_cast<unsigned char>(base[keep]) & 0xC0) == 0x80) --keep;  // not inside a character
    base.resize(keep);
  }
  return dir + base + std::string(temp_suffix);
}

}  // namespace detail::output

/// Refuses, before any work, an output that would replace one of the inputs: `out_path`
/// (through symbolic links) is the same file as an input, or as a regular file directly
/// inside an input directory (a checkpoint's shards, its config). Inputs that do not exist
/// are skipped (their readers report them). `component` names the caller in the error.
/// Errors: invalid_argument naming both paths.
inline result<void> check_output_not_input(const std::string& out_path, const std::vector<std::string>& inputs,
                                           const std::string& component = "file") {
  struct stat o {};
  if (out_path.empty() || ::stat(out_path.c_str(), &o) != 0) return {};  // nothing there to replace
  auto same = [&](const struct stat& s) { return s.st_dev == o.st_dev && s.st_ino == o.st_ino; };
  for (const auto& in : inputs) {
    struct stat s {};
    if (in.empty() || ::stat(in.c_str(), &s) != 0) continue;
    if (same(s))
      return error(error_code::invalid_argument, component,
                   "output '" + out_path + "' is the input '" + in + "': refusing to overwrite it");
    if (!S_ISDIR(s.st_mode)) continue;
    DIR* d = ::opendir(in.c_str());
    if (!d) continue;
    std::string hit;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string p = in + (in.back() == '/' ? "" : "/") + name;
      struct stat f {};
      if (::stat(p.c_str(), &f) == 0 && S_ISREG(f.st_mode) && same(f)) {
        hit = p;
        break;
      }
    }
    ::closedir(d);
    if (!hit.empty())
      return error(error_code::invalid_argument, component,
                   "output '" + out_path + "' is '" + hit + "', a file of the input directory '" + in +
                       "': refusing to overwrite it");
  }
  return {};
}

namespace detail {
inline void output_cleanup_signal(int sig) {
  const int saved = errno;
  remove_temporary_outputs();
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);  // blocked until the handler returns, then kills with the default action
  errno = saved;
}
}  // namespace detail

/// Opt-in, process-wide: on SIGINT, SIGTERM, SIGHUP and SIGXFSZ, remove the temporary
/// output files, then die of the same signal (default action, so the exit status says
/// "killed by signal"). Only signals whose disposition is still the default are taken: an
/// ignored SIGHUP (nohup) or SIGINT (background job) stays ignored, and a handler the
/// application installed stays in place (it may call remove_temporary_outputs() itself).
/// Call it once, early, from the main thread. Errors: io_error if sigaction fails.
inline result<void> install_output_cleanup_handlers() {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGXFSZ}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0)
      return error(error_code::io_error, "file", "sigaction(" + std::to_string(sig) + "): " + std::strerror(errno));
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = detail::output_cleanup_signal;
    sigemptyset(&sa.sa_mask);
    for (const int other : {SIGINT, SIGTERM, SIGHUP, SIGXFSZ}) sigaddset(&sa.sa_mask, other);
    if (::sigaction(sig, &sa, nullptr) != 0)
      return error(error_code::io_error, "file", "sigaction(" + std::to_string(sig) + "): " + std::strerror(errno));
  }
  return {};
}

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

  /// Creates the temporary file for `path` (same directory, so rename is atomic). A
  /// symbolic link at `path` is written through: the temporary file goes beside the file
  /// the link points to, and commit() replaces that file; the link stays. A name near the
  /// file system's limit gets a shortened temporary name.
  /// Errors: invalid_argument (a directory, device, FIFO or socket at `path`, which the
  /// rename would replace; a loop of links; a name past the limit), io_error (naming the path).
  static result<output_file> create(const std::string& path) {
    output_file f;
    f.path_ = path;
    SBGQ_TRY(f.target_, detail::output::resolve_target(path));
    SBGQ_TRY(std::string tmpl, detail::output::temp_template(f.target_));
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    if (fd < 0) return sys_error("cannot create a temporary file for '" + path + "'");
    ::fchmod(fd, 0644);
    f.tmp_path_.assign(buf.data());
    f.slot_ = detail::temp_registry::add(f.tmp_path_);
    f.fp_ = ::fdopen(fd, "wb");
    if (!f.fp_) {
      const int saved = errno;
      ::close(fd);
      f.abandon();
      errno = saved;
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
  /// The path given to create().
  const std::string& path() const noexcept { return path_; }
  /// The file commit() replaces: path(), or the file a symbolic link there points to.
  const std::string& target() const noexcept { return target_; }

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
    if (std::rename(tmp_path_.c_str(), target_.c_str()) != 0)
      return sys_error("cannot rename '" + tmp_path_ + "' to '" + target_ + "'");
    detail::temp_registry::remove(slot_);
    slot_ = -1;
    tmp_path_.clear();
    return {};
  }

  /// Drops the temporary file (also done by the destructor when not committed).
  void abandon() noexcept {
    if (fp_) std::fclose(fp_);
    fp_ = nullptr;
    if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
    detail::temp_registry::remove(slot_);
    slot_ = -1;
    tmp_path_.clear();
  }

 private:
  static error sys_error(const std::string& what) { return detail::output::sys_error(what); }
  void swap(output_file& o) noexcept {
    std::swap(fp_, o.fp_);
    std::swap(path_, o.path_);
    std::swap(target_, o.target_);
    std::swap(tmp_path_, o.tmp_path_);
    std::swap(written_, o.written_);
    std::swap(slot_, o.slot_);
  }

  std::FILE* fp_ = nullptr;
  std::string path_, target_, tmp_path_;
  std::uint64_t written_ = 0;
  int slot_ = -1;  ///< detail::temp_registry slot of tmp_path_, or -1
};

SBGQ_END_NAMESPACE
