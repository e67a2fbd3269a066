// Core utilities: errors, checked arithmetic, dispatch, the thread pool, the byte reader,
// mmap and atomic output files.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sbgq/core/detail/byte_reader.hpp>
#include <sbgq/core/detail/checked.hpp>
#include <sbgq/core/error.hpp>
#include <sbgq/core/json.hpp>
#include <sbgq/core/progress.hpp>
#include <sbgq/core/mapped_file.hpp>
#include <sbgq/core/output_file.hpp>
#include <sbgq/core/parallel.hpp>
#include <sbgq/simd/dispatch.hpp>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace fs = std::filesystem;

namespace {
sbgq::result<int> parse_positive(int x) {
  if (x <= 0) return sbgq::error(sbgq::error_code::bad_value, "test", "expected a positive number, found " + std::to_string(x), 17);
  return x;
}
sbgq::result<int> twice(int x) {
  SBGQ_TRY(int v, parse_positive(x));
  return 2 * v;
}
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> v;
  for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  return v;
}
}  // namespace

TEST_CASE("result and error messages") {
  auto ok = twice(4);
  REQUIRE(ok.has_value());
  CHECK(*ok == 8);
  auto bad = twice(-1);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == sbgq::error_code::bad_value);
  CHECK(bad.error().message() == "[sbgq.test.bad_value] expected a positive number, found -1 (byte 17)");
  CHECK_THROWS_AS(bad.value(), sbgq::exception);
  sbgq::result<void> v = sbgq::error_code::truncated;
  CHECK_FALSE(v.has_value());
  CHECK(v.error().message() == "[sbgq.truncated]");
}

TEST_CASE("checked arithmetic detects overflow") {
  std::uint64_t out = 0;
  CHECK(sbgq::detail::checked_mul(1ull << 32, 1ull << 31, out));
  CHECK(out == 1ull << 63);
  CHECK_FALSE(sbgq::detail::checked_mul(1ull << 32, 1ull << 32, out));
  CHECK_FALSE(sbgq::detail::checked_add(~0ull, 1, out));
  CHECK(sbgq::detail::checked_align_up(33, 32, out));
  CHECK(out == 64);
  CHECK_FALSE(sbgq::detail::checked_align_up(~0ull - 3, 32, out));
}

TEST_CASE("byte reader stops at the end and reports absolute offsets") {
  const std::byte data[6] = {std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{7}, std::byte{8}};
  sbgq::detail::byte_reader r(data, 100);
  std::uint32_t u = 0;
  REQUIRE(r.read(u));
  CHECK(u == 1);
  CHECK(r.offset() == 104);
  std::uint32_t v = 0;
  CHECK_FALSE(r.read(v));  // only 2 bytes left
  CHECK(r.offset() == 104);
  std::string_view s;
  CHECK(r.read_string(2, s));
  CHECK(s == std::string_view("\x07\x08", 2));
  CHECK(r.remaining() == 0);
}

TEST_CASE("simd level: detection, environment and overrides") {
  const auto supported = sbgq::supported_simd_level();
  const auto active = sbgq::active_simd_level();
  MESSAGE("supported " << sbgq::simd_level_name(supported) << ", active " << sbgq::simd_level_name(active));
  CHECK(active <= supported);
  // check_simd_level: when CI forces a level through SBGQ_SIMD, it must really be in force.
  if (const char* env = std::getenv("SBGQ_SIMD")) {
    sbgq::simd_level want{};
    REQUIRE(sbgq::parse_simd_level(env, want));
    CHECK(active == (want < supported ? want : supported));
  } else {
    CHECK(active == supported);
  }
  {
    sbgq::simd_override cap(sbgq::simd_level::scalar);
    CHECK(sbgq::active_simd_level() == sbgq::simd_level::scalar);
    {
      sbgq::simd_override up(sbgq::simd_level::avx512);  // cannot raise above the CPU
      CHECK(sbgq::active_simd_level() <= supported);
    }
    CHECK(sbgq::active_simd_level() == sbgq::simd_level::scalar);
  }
  CHECK(sbgq::active_simd_level() == active);
  sbgq::simd_level l{};
  CHECK_FALSE(sbgq::parse_simd_level("sse9", l));
}

TEST_CASE("parallel_for covers every index once, for any thread count and grain") {
  for (int threads : {1, 2, 3, 8}) {
    for (std::size_t n : {0u, 1u, 7u, 1000u}) {
      for (std::size_t grain : {1u, 3u, 64u}) {
        std::vector<std::atomic<int>> hits(n);
        sbgq::parallel_for(n, grain, threads, [&](std::size_t b, std::size_t e) {
          CHECK(e - b <= grain);
          for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
      }
    }
  }
}

TEST_CASE("parallel chunked reduction is bit-identical across thread counts") {
  std::vector<float> x(100000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 1e3f;
  auto sum_with = [&](int threads) {
    const std::size_t grain = 1024, chunks = (x.size() + grain - 1) / grain;
    std::vector<float> partial(chunks);
    sbgq::parallel_for(x.size(), grain, threads, [&](std::size_t b, std::size_t e) {
      float s = 0;
      for (std::size_t i = b; i < e; ++i) s += x[i];
      partial[b / grain] = s;
    });
    return std::accumulate(partial.begin(), partial.end(), 0.0f);
  };
  const float s1 = sum_with(1);
  CHECK(sum_with(2) == s1);
  CHECK(sum_with(5) == s1);
}

TEST_CASE("parallel_for rethrows the first exception") {
  CHECK_THROWS_AS(sbgq::parallel_for(100, 1, 2, [](std::size_t b, std::size_t) {
                    if (b == 37) throw std::runtime_error("boom");
                  }),
                  std::runtime_error);
  // and the pool still works afterwards
  std::atomic<int> n{0};
  sbgq::parallel_for(10, 1, 2, [&](std::size_t b, std::size_t e) { n += static_cast<int>(e - b); });
  CHECK(n == 10);
}

TEST_CASE("output_file is atomic: nothing under the final name until commit") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_file";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "out.bin").string();
  {
    auto f = sbgq::output_file::create(path);
    REQUIRE(f.has_value());
    REQUIRE(f->write("abc", 3).has_value());
    CHECK(f->bytes_written() == 3);
    CHECK_FALSE(fs::exists(path));
    // destroyed without commit: the temporary file disappears too
  }
  CHECK(files_in(dir).empty());
  {
    auto f = sbgq::output_file::create(path);
    REQUIRE(f.has_value());
    REQUIRE(f->write("hello", 5).has_value());
    REQUIRE(f->write_zeros(3).has_value());
    REQUIRE(f->commit().has_value());
  }
  CHECK(files_in(dir) == std::vector<std::string>{"out.bin"});
  auto m = sbgq::mapped_file::open(path);
  REQUIRE(m.has_value());
  REQUIRE(m->size() == 8);
  CHECK(std::memcmp(m->data(), "hello\0\0\0", 8) == 0);
  // An existing good file survives an abandoned rewrite.
  {
    auto f = sbgq::output_file::create(path);
    REQUIRE(f.has_value());
    REQUIRE(f->write("garbage", 7).has_value());
  }
  CHECK(fs::file_size(path) == 8);
  // Errors name the path.
  auto bad = sbgq::output_file::create((dir / "no" / "such" / "dir" / "x").string());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == sbgq::error_code::io_error);
  CHECK(bad.error().message().find("no/such/dir") != std::string::npos);
  auto missing = sbgq::mapped_file::open((dir / "missing").string());
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message().find("No such file") != std::string::npos);
  auto isdir = sbgq::mapped_file::open(dir.string());
  REQUIRE_FALSE(isdir.has_value());
  CHECK(isdir.error().message().find("not a regular file") != std::string::npos);
}

namespace {
/// Names in `dir` that contain ".tmp.".
std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& n : files_in(dir))
    if (n.find(".tmp.") != std::string::npos) v.push_back(n);
  return v;
}
}  // namespace

TEST_CASE("remove_temporary_outputs unlinks the temporary files of live outputs (the signal path)") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_registry";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream(dir / "a.bin") << "previous";
  }
  auto a = sbgq::output_file::create((dir / "a.bin").string());
  auto b = sbgq::output_file::create((dir / "b.bin").string());
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  REQUIRE(a->write("new a", 5).has_value());
  REQUIRE(b->write("new b", 5).has_value());
  CHECK(temp_files_in(dir).size() == 2);
  sbgq::remove_temporary_outputs();
  CHECK(temp_files_in(dir).empty());
  CHECK(files_in(dir) == std::vector<std::string>{"a.bin"});
  // The objects stay usable: commit fails (the temporary file is gone), with an error
  // naming the path, and leaves the previous file alone; abandon is harmless.
  auto c = a->commit();
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().code == sbgq::error_code::io_error);
  CHECK(c.error().message().find("a.bin") != std::string::npos);
  a->abandon();
  b->abandon();
  std::ifstream in(dir / "a.bin");
  std::string text;
  std::getline(in, text);
  CHECK(text == "previous");
  // Slots are released: a committed output and an abandoned one leave nothing to remove.
  {
    auto d = sbgq::output_file::create((dir / "d.bin").string());
    REQUIRE(d.has_value());
    REQUIRE(d->write("d", 1).has_value());
    REQUIRE(d->commit().has_value());
  }
  sbgq::remove_temporary_outputs();
  CHECK(fs::file_size(dir / "d.bin") == 1);
  // More live outputs than registry slots: all still work and clean up after themselves.
  {
    std::vector<sbgq::output_file> many;
    for (int i = 0; i < 80; ++i) {
      auto f = sbgq::output_file::create((dir / ("m" + std::to_string(i))).string());
      REQUIRE(f.has_value());
      many.push_back(std::move(*f));
    }
    CHECK(temp_files_in(dir).size() == 80);
    sbgq::remove_temporary_outputs();
    CHECK(temp_files_in(dir).size() == 80 - sbgq::detail::temp_registry::n_slots);
  }
  CHECK(temp_files_in(dir).empty());
}

TEST_CASE("output_file refuses to replace what is not a regular file (devices, FIFOs, directories)") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_special";
  fs::remove_all(dir);
  fs::create_directories(dir / "subdir");
  auto expect_refused = [&](const std::string& path, const std::string& kind) {
    auto f = sbgq::output_file::create(path);
    REQUIRE_FALSE(f.has_value());  // REQUIRE: stop before /dev/null if this ever regresses
    CHECK(f.error().code == sbgq::error_code::invalid_argument);
    CHECK_MESSAGE(f.error().message().find("'" + path + "' is " + kind + ", not a regular file: refusing to replace it") !=
                      std::string::npos,
                  f.error().message());
  };
  const std::string fifo = (dir / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  expect_refused(fifo, "a FIFO");
  CHECK(fs::is_fifo(fifo));
  expect_refused((dir / "subdir").string(), "a directory");
  CHECK(fs::is_directory(dir / "subdir"));
  CHECK(files_in(dir).size() == 2);  // no temporary file was made
  // As root, a rename onto /dev/null would replace the system's null device.
  expect_refused("/dev/null", "a character device");
  struct stat st {};
  REQUIRE(::stat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  // Through a link, the message names both.
  fs::create_symlink("/dev/null", dir / "to-null");
  auto l = sbgq::output_file::create((dir / "to-null").string());
  REQUIRE_FALSE(l.has_value());
  CHECK(l.error().message().find("(a symbolic link to '/dev/null') is a character device") != std::string::npos);
  CHECK(fs::is_symlink(dir / "to-null"));
  REQUIRE(::stat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
}

TEST_CASE("output_file writes through a symbolic link: the link stays and points to the new content") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_symlink";
  fs::remove_all(dir);
  fs::create_directories(dir / "real");
  std::ofstream(dir / "real" / "model.gguf") << "old";
  fs::create_symlink("real/model.gguf", dir / "link.gguf");   // relative to the link's directory
  fs::create_symlink(dir / "link.gguf", dir / "link2.gguf");  // a chain, absolute
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  for (const char* name : {"link.gguf", "link2.gguf"}) {
    CAPTURE(name);
    auto f = sbgq::output_file::create((dir / name).string());
    REQUIRE(f.has_value());
    CHECK(f->target() == (dir / "real" / "model.gguf").string());
    REQUIRE(f->write(name, std::strlen(name)).has_value());
    REQUIRE(f->commit().has_value());
    CHECK(fs::is_symlink(dir / name));
    CHECK(read(dir / name) == name);
    CHECK(read(dir / "real" / "model.gguf") == name);
  }
  CHECK(fs::read_symlink(dir / "link.gguf") == "real/model.gguf");
  CHECK(files_in(dir / "real") == std::vector<std::string>{"model.gguf"});
  // A dangling link: the file it names is created.
  fs::create_symlink("real/new.gguf", dir / "dangling.gguf");
  {
    auto f = sbgq::output_file::create((dir / "dangling.gguf").string());
    REQUIRE(f.has_value());
    REQUIRE(f->write("new", 3).has_value());
    REQUIRE(f->commit().has_value());
  }
  CHECK(fs::is_symlink(dir / "dangling.gguf"));
  CHECK(read(dir / "real" / "new.gguf") == "new");
  // A loop of links is an error, not a hang.
  fs::create_symlink("loop-b", dir / "loop-a");
  fs::create_symlink("loop-a", dir / "loop-b");
  auto loop = sbgq::output_file::create((dir / "loop-a").string());
  REQUIRE_FALSE(loop.has_value());
  CHECK(loop.error().message().find("levels of symbolic links") != std::string::npos);
}

TEST_CASE("check_output_not_input: the output may not be an input or a file of an input directory") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_not_input";
  fs::remove_all(dir);
  fs::create_directories(dir / "model");
  std::ofstream(dir / "model" / "model-00001-of-00002.safetensors") << "shard";
  std::ofstream(dir / "in.gguf") << "input";
  fs::create_symlink(dir / "model" / "model-00001-of-00002.safetensors", dir / "shard-link");
  const std::string model = (dir / "model").string();
  auto refused = [](const sbgq::result<void>& r, const std::string& text) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == sbgq::error_code::invalid_argument);
    CHECK_MESSAGE(r.error().message().find(text) != std::string::npos, r.error().message());
  };
  const std::string shard = model + "/model-00001-of-00002.safetensors";
  refused(sbgq::check_output_not_input(shard, {model}, "convert"),
          "[sbgq.convert.invalid_argument] output '" + shard + "' is '" + shard + "', a file of the input directory '" + model + "'");
  refused(sbgq::check_output_not_input((dir / "shard-link").string(), {model}), "shard-link' is '" + shard + "'");
  refused(sbgq::check_output_not_input((dir / "in.gguf").string(), {(dir / "in.gguf").string()}, "quantize"),
          "output '" + (dir / "in.gguf").string() + "' is the input '" + (dir / "in.gguf").string() + "'");
  refused(sbgq::check_output_not_input(model, {model}), "is the input");
  fs::create_hard_link(dir / "in.gguf", dir / "hard.gguf");
  refused(sbgq::check_output_not_input((dir / "hard.gguf").string(), {(dir / "in.gguf").string()}), "is the input");
  // Fine: a new file, a file beside the input, in the input directory under a new name.
  CHECK(sbgq::check_output_not_input((dir / "out.gguf").string(), {model, (dir / "in.gguf").string()}).has_value());
  CHECK(sbgq::check_output_not_input(model + "/model.gguf", {model}).has_value());
  std::ofstream(dir / "other.gguf") << "other";
  CHECK(sbgq::check_output_not_input((dir / "other.gguf").string(), {model, (dir / "in.gguf").string(), ""}).has_value());
}

TEST_CASE("an output name near the 255-byte limit works: the temporary name is shortened") {
  const fs::path dir = fs::path(SBGQ_TEST_TMP_DIR) / "core_output_long";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (std::size_t len : {244u, 245u, 250u, 255u}) {
    CAPTURE(len);
    const std::string name = std::string(len - 5, 'n') + ".gguf";
    {
      auto f = sbgq::output_file::create((dir / name).string());
      REQUIRE_MESSAGE(f.has_value(), (f ? "" : f.error().message()));
      CHECK(temp_files_in(dir).size() == 1);
      for (const auto& t : temp_files_in(dir)) CHECK(t.size() <= 255);
      REQUIRE(f->write("x", 1).has_value());
      REQUIRE(f->commit().has_value());
    }
    CHECK(fs::file_size(dir / name) == 1);
    CHECK(temp_files_in(dir).empty());
  }
  // A multi-byte character is not cut in half.
  std::string utf8;
  while (utf8.size() < 250) utf8 += "\xc3\xa9";  // U+00E9, two bytes each
  {
    auto f = sbgq::output_file::create((dir / utf8).string());
    REQUIRE(f.has_value());
    for (const auto& t : temp_files_in(dir)) {
      const std::string stem = t.substr(0, t.find(".tmp."));
      CHECK(stem.size() % 2 == 0);
      CHECK(utf8.compare(0, stem.size(), stem) == 0);
    }
  }
  // Past the limit: a clear error at create, not after the work.
  auto too_long = sbgq::output_file::create((dir / std::string(256, 'x')).string());
  REQUIRE_FALSE(too_long.has_value());
  CHECK(too_long.error().message().find("the name is 256 bytes, longer than the file system's limit of 255") != std::string::npos);
}

TEST_CASE("json_writer: escapes, layouts and non-finite numbers") {
  sbgq::json_writer j;
  j.begin_object();
  j.key("name").value("a \"quoted\" \\ name\n\x01");
  j.key("n").value(std::uint64_t{18446744073709551615u});
  j.key("x").value(0.1f);
  j.key("nan").value(std::nan(""));
  j.key("list").begin_array().value(1).value(true).null().end_array();
  j.key("rows").begin_array(sbgq::json_layout::lines);
  j.begin_object(sbgq::json_layout::inline_).key("k").value("v").end_object();
  j.begin_object(sbgq::json_layout::inline_).end_object();
  j.end_array();
  j.key("empty").begin_object().end_object();
  j.end_object();
  const std::string text = std::move(j).str();
  CHECK(text ==
        "{\n"
        "  \"name\": \"a \\\"quoted\\\" \\\\ name\\u000a\\u0001\",\n"
        "  \"n\": 18446744073709551615,\n"
        "  \"x\": 0.100000001,\n"
        "  \"nan\": null,\n"
        "  \"list\": [1, true, null],\n"
        "  \"rows\": [\n"
        "    {\"k\": \"v\"},\n"
        "    {}\n"
        "  ],\n"
        "  \"empty\": {}\n"
        "}\n");
}

TEST_CASE("progress_reporter: stamps events, keeps stage times, notes do not change the stage") {
  std::vector<sbgq::progress_event> seen;
  std::vector<std::string> messages;
  const sbgq::progress_fn fn = [&](const sbgq::progress_event& e) {
    seen.push_back(e);
    messages.emplace_back(e.message);
  };
  sbgq::progress_reporter r(fn);
  r(sbgq::progress_event::at(sbgq::progress_stage::quantize, 1.5).item(2, 5).on("blk.0.ffn_up.weight", "q4_K"));
  r.note("a notice");
  r(sbgq::progress_event::at(sbgq::progress_stage::write, -1.0));
  r.finish();
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].fraction == 1.0);  // clamped
  CHECK(seen[0].index == 2);
  CHECK(seen[0].count == 5);
  CHECK(seen[1].stage == sbgq::progress_stage::note);
  CHECK(messages[1] == "a notice");
  CHECK(seen[2].fraction == 0.0);
  CHECK(seen[3].stage == sbgq::progress_stage::done);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].seconds >= seen[i - 1].seconds);
  const auto times = r.stage_seconds();
  CHECK(times.count("quantize") == 1);
  CHECK(times.count("write") == 1);
  CHECK(times.count("note") == 0);
  CHECK(times.count("done") == 0);
  // Without a callback the reporter still keeps times.
  const sbgq::progress_fn none;
  sbgq::progress_reporter quiet(none);
  quiet(sbgq::progress_event::at(sbgq::progress_stage::read));
  quiet.finish();
  CHECK(quiet.stage_seconds().count("read") == 1);
}
