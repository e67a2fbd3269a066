// Shared pieces of the commands that run a model (perplexity, imatrix): opening MODEL (an
// HF directory or a GGUF file) and tokenizing the text file given with -f.
#pragma once

#include <fstream>
#include <sbgq/model/model_source.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"

namespace sbgq::cli {

inline std::string read_text_or_exit(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) std::exit(fail(error(error_code::io_error, "cli", "cannot read text file '" + path + "'")));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::int32_t> tokenize_file_or_exit(const model_source& m, const std::string& path) {
  const std::string text = read_text_or_exit(path);
  auto ids = unwrap(m.tok.encode(text));
  return ids;
}

}  // namespace sbgq::cli
