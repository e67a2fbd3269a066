// sbgq inspect PATH [--json] [--all]: the metadata and tensor table of a GGUF file, a
// safetensors file, or an HF checkpoint directory (sharded through its index), like a gguf
// dump. Human-readable by default; --json prints one JSON object for machines.
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "commands.hpp"
#include <sbgq/io/gguf.hpp>
#include <sbgq/io/safetensors.hpp>

namespace sbgq::cli {

namespace {

std::string json_escape(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          o += fmt::format("\\u{:04x}", c);
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

/// One row of the tensor table.
struct row {
  std::string name, type, shape;
  std::uint64_t bytes = 0, elements = 0;
};

void print_table(const std::vector<row>& rows, bool all) {
  std::size_t w = 4;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  fmt::print("{:>6}  {:<{}}  {:<8}  {:<22}  {:>12}\n", "#", "name", w, "type", "shape", "bytes");
  std::uint64_t total = 0, elems = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    total += rows[i].bytes;
    elems += rows[i].elements;
    if (!all && rows.size() > 60 && i >= 40 && i + 10 < rows.size()) {
      if (i == 40) fmt::print("{:>6}  ... {} more (--all shows every tensor)\n", "", rows.size() - 50);
      continue;
    }
    fmt::print("{:>6}  {:<{}}  {:<8}  {:<22}  {:>12}\n", i, rows[i].name, w, rows[i].type, rows[i].shape, rows[i].bytes);
  }
  fmt::print("{} tensors, {} elements, {} of tensor data ({:.3f} bits per element)\n", rows.size(), elems,
             human_bytes(static_cast<double>(total)), elems ? 8.0 * static_cast<double>(total) / static_cast<double>(elems) : 0.0);
}

void print_json(const std::string& path, const std::string& format, const std::vector<std::pair<std::string, std::string>>& meta,
                const std::vector<row>& rows) {
  fmt::print("{{\"path\": {}, \"format\": {}, \"metadata\": {{", json_escape(path), json_escape(format));
  for (std::size_t i = 0; i < meta.size(); ++i) fmt::print("{}{}: {}", i ? ", " : "", json_escape(meta[i].first), json_escape(meta[i].second));
  fmt::print("}}, \"tensors\": [");
  for (std::size_t i = 0; i < rows.size(); ++i)
    fmt::print("{}{{\"name\": {}, \"type\": {}, \"shape\": {}, \"bytes\": {}}}", i ? ", " : "", json_escape(rows[i].name),
               json_escape(rows[i].type), rows[i].shape, rows[i].bytes);
  fmt::print("]}}\n");
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

/// Which reader gets a regular file: a ".gguf" name or a "GGUF" magic is GGUF; a
/// ".safetensors" name, or a file whose 9th byte opens a JSON header ('{' or JSON
/// whitespace after the 8-byte length), is safetensors; anything else goes to the GGUF
/// reader too, whose error then says what the first 4 bytes are ("bad magic") rather
/// than a safetensors error about a header length made of those bytes.
bool looks_like_gguf(const std::string& path) {
  if (ends_with(path, ".gguf")) return true;
  unsigned char head[9] = {};
  std::size_t n = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    n = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
  }
  if (n >= 4 && std::string_view(reinterpret_cast<const char*>(head), 4) == "GGUF") return true;
  if (ends_with(path, ".safetensors")) return false;
  const unsigned char c = head[8];
  const bool json_start = n == 9 && (c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r');
  return n >= 4 && !json_start;
}

}  // namespace

int cmd_inspect(parser& p, const words& w) {
  CLI::App& app = p.app();
  std::string path;
  bool json = false, all = false;
  app.add_flag("--json", json, "print one JSON object");
  app.add_flag("--all", all, "every tensor and the whole of long values");
  app.add_option("path", path, "a .gguf file, a .safetensors file, or a model directory")->type_name("PATH");
  p.parse(w);
  if (path.empty()) throw usage_error{"missing PATH"};
  std::vector<std::pair<std::string, std::string>> meta;
  std::vector<row> rows;
  std::string format;
  std::error_code ec;
  const bool is_file = std::filesystem::is_regular_file(path, ec);
  const bool is_gguf = is_file && looks_like_gguf(path);
  if (is_gguf) {
    auto g = unwrap(gguf_file::open(path));
    format = "gguf v" + std::to_string(g.version());
    meta.emplace_back("gguf.alignment", std::to_string(g.alignment()));
    meta.emplace_back("gguf.data_offset", std::to_string(g.data_offset()));
    for (const auto& kv : g.metadata())
      meta.emplace_back(kv.key, std::string(gguf_value_type_name(kv.value.type())) + " " + to_string(kv.value, json ? 64 : 8));
    for (const auto& t : g.tensors()) {
      std::string shape = "[";
      for (std::uint32_t d = 0; d < t.n_dims; ++d) shape += (d ? ", " : "") + std::to_string(t.ne[d]);
      rows.push_back({t.name, std::string(type_name(t.type)), shape + "]", t.nbytes, t.n_elements()});
    }
  } else {
    auto ck = unwrap(safetensors_checkpoint::open(path));
    format = "safetensors, " + std::to_string(ck.shards().size()) + " file(s)";
    if (!ck.index_path().empty()) meta.emplace_back("index", ck.index_path());
    if (auto ts = ck.total_size()) meta.emplace_back("index.total_size", std::to_string(*ts));
    for (const auto& shard : ck.shards())
      for (const auto& m : shard.metadata()) meta.emplace_back(std::filesystem::path(shard.path()).filename().string() + ":" + m.key, m.value);
    for (const auto& v : ck.views()) {
      std::string shape = v.shape.to_string();
      rows.push_back({std::string(v.name), std::string(dtype_name(v.type)), shape, v.bytes.size(), v.elements()});
    }
  }
  if (json) {
    print_json(path, format, meta, rows);
    return 0;
  }
  fmt::print("{}: {}\n", path, format);
  std::size_t kw = 0;
  for (const auto& [k, v] : meta) kw = std::max(kw, k.size());
  for (const auto& [k, v] : meta) {
    std::string val = v;
    if (!all && val.size() > 120) val = val.substr(0, 117) + "...";
    fmt::print("  {:<{}}  {}\n", k, kw, val);
  }
  print_table(rows, all);
  return 0;
}

}  // namespace sbgq::cli
