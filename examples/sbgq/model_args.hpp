// Shared pieces of the commands that run a model (perplexity, imatrix, pipeline, transform):
// reading the text file given with -f and tokenizing it with MODEL's tokenizer.
#pragma once

#include <fstream>
#include <sbgq/model/model_source.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"

namespace sbgq::cli {

/// The whole text file, or a failure naming it.
inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw failure{error(error_code::io_error, "cli", "cannot read text file '" + path + "'")};
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::int32_t> tokenize_file(const model_source& m, const std::string& path) {
  return unwrap(m.tok.encode(read_text(path)));
}

}  // namespace sbgq::cli
