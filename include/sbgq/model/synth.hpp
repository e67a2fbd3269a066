// Synthetic Qwen3.5 checkpoints in the exact HF layout of the real ones: nested config.json,
// sharded safetensors with an index, tokenizer.json / tokenizer_config.json (a small
// byte-level BPE vocabulary with the Qwen3.5 pre-tokenizer), generation_config.json.
//
// The weights are seeded random numbers shaped like a trained model's, so scale tests
// (memory, time) and the demo exercise the same code paths as the real 9B:
//   - 2-D projections N(0, s) with s = 0.02 times a per-layer factor in [0.8, 1.25];
//     residual writers (o_proj, out_proj, down_proj) get s / sqrt(2 L);
//   - a few "outlier" input channels of the residual stream (0.5 %, at least 2) whose
//     columns are 6x larger in every matrix that reads the stream, as massive-activation
//     channels make them in trained models;
//   - RMSNorm offsets (stored w, gain 1 + w) around 0.1; the DeltaNet gated-norm gain near 1;
//   - A_log = log U(1, 16), dt_bias = softplus^-1(dt) with dt log-uniform in [1e-3, 1e-1],
//     as Qwen3.5 initialises them; conv1d N(0, 0.3);
//   - dtypes as the real checkpoint: BF16, with A_log and linear_attn.norm.weight in F32.
// Everything is a pure function of (preset, seed, layers): a tensor's values depend only on
// its name and the seed, and rows are generated in fixed blocks in parallel, so output is
// identical for any thread count. Tensors are generated and written one block at a time
// (memory ~ one block), so the 18 GB 9b preset is written streaming.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../core/base.hpp"
#include "detail/unicode.hpp"
#include "../core/dtype.hpp"
#include "../core/progress.hpp"
#include "../core/error.hpp"
#include "model_config.hpp"
#include "../core/output_file.hpp"
#include "../core/parallel.hpp"
#include "qwen35_tensors.hpp"
#include "../io/safetensors.hpp"
#include "tokenizer.hpp"

SBGQ_BEGIN_NAMESPACE

/// Sizes of the synthetic presets (qwen35-model.md section 1.3; tiny = the shared test model).
struct synth_preset {
  const char* name;
  std::int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, lin_k_heads, lin_v_heads, lin_head_dim, vocab;
  bool tied;
  std::int64_t mrope_t, mrope_h, mrope_w;
};

inline constexpr synth_preset synth_presets[] = {
    {"tiny", 256, 768, 8, 4, 2, 64, 2, 4, 64, 8192, false, 3, 3, 2},
    {"0.8b", 1024, 3584, 24, 8, 2, 256, 16, 16, 128, 248320, true, 11, 11, 10},
    {"2b", 2048, 6144, 24, 8, 2, 256, 16, 16, 128, 248320, true, 11, 11, 10},
    {"4b", 2560, 9216, 32, 16, 4, 256, 16, 32, 128, 248320, true, 11, 11, 10},
    {"9b", 4096, 12288, 32, 16, 4, 256, 16, 32, 128, 248320, false, 11, 11, 10},
    {"27b", 5120, 17408, 64, 24, 4, 256, 16, 48, 128, 248320, false, 11, 11, 10},
};

/// Options of synthesize_checkpoint.
struct synth_options {
  std::string preset = "tiny";
  std::uint64_t seed = 0;
  std::int64_t layers = -1;                      ///< -1: the preset's depth (a multiple of 4 keeps the pattern)
  std::uint64_t shard_bytes = std::uint64_t{4} << 30;  ///< shard size target (tiny: 2 shards)
  bool mtp = true;                               ///< write the mtp.* block as the real checkpoints do
  int n_threads = 0;
  progress_fn progress;  ///< stage write before each tensor (index, count, tensor = HF name)
};

struct synth_report {
  std::size_t n_tensors = 0;
  std::size_t n_shards = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
};

namespace detail::synth {

inline std::uint64_t mix(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline std::uint64_t name_hash(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}
/// splitmix64 stream with Box-Muller normals (platform-independent, unlike <random>).
class rng {
 public:
  explicit rng(std::uint64_t s) : s_(s) {}
  std::uint64_t next() noexcept { return mix(s_ += 0x9e3779b97f4a7c15ull); }
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  float normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform() + 0x1.0p-60, u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(6.283185307179586 * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(6.283185307179586 * u2));
  }

 private:
  std::uint64_t s_;
  float spare_ = 0;
  bool has_spare_ = false;
};

/// How one tensor's values are drawn.
struct recipe {
  enum kind_t { normal, offset_norm, gain_norm, a_log, dt_bias } kind = normal;
  float mean = 0, sigma = 0.02f;
  bool outlier_columns = false;  ///< multiply the residual stream's outlier columns
};

inline recipe recipe_for(const std::string& hf, std::int64_t layer, std::int64_t n_layers, std::uint64_t seed) {
  recipe r;
  const float layer_factor = 0.8f + 0.45f * static_cast<float>(mix(seed ^ static_cast<std::uint64_t>(layer + 7)) % 1000) / 1000.0f;
  auto ends = [&](std::string_view s) { return hf.size() >= s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0; };
  if (ends("A_log")) { r.kind = recipe::a_log; return r; }
  if (ends("dt_bias")) { r.kind = recipe::dt_bias; return r; }
  if (ends("linear_attn.norm.weight")) { r.kind = recipe::gain_norm; r.mean = 1.0f; r.sigma = 0.05f; return r; }
  if (ends("q_norm.weight") || ends("k_norm.weight")) { r.kind = recipe::offset_norm; r.mean = 0.2f; r.sigma = 0.1f; return r; }
  if (ends("norm.weight") || ends("layernorm.weight")) { r.kind = recipe::offset_norm; r.mean = 0.1f; r.sigma = 0.1f; return r; }
  if (ends("conv1d.weight")) { r.sigma = 0.3f; return r; }
  if (ends("embed_tokens.weight") || ends("lm_head.weight")) { r.sigma = 0.02f; return r; }
  const bool writer = ends("o_proj.weight") || ends("out_proj.weight") || ends("down_proj.weight");
  r.sigma = 0.02f * layer_factor / (writer ? std::sqrt(2.0f * static_cast<float>(std::max<std::int64_t>(n_layers, 1))) : 1.0f);
  // Readers of the residual stream: every projection whose input is the hidden state.
  r.outlier_columns = !writer && !ends("mtp.fc.weight");
  return r;
}

/// Fills `out` with rows [r0, r0 + out.size() / cols) of a tensor.
inline void generate_rows(const recipe& rc, std::uint64_t tensor_seed, std::int64_t r0, std::int64_t cols,
                          const std::vector<char>& outlier, std::span<float> out) {
  const std::int64_t rows = static_cast<std::int64_t>(out.size()) / cols;
  for (std::int64_t r = 0; r < rows; ++r) {
    rng g(mix(tensor_seed ^ static_cast<std::uint64_t>(r0 + r)));
    float* y = out.data() + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      switch (rc.kind) {
        case recipe::a_log: y[c] = static_cast<float>(std::log(1.0 + 15.0 * g.uniform())); break;
        case recipe::dt_bias: {
          const double dt = std::exp(std::log(1e-3) + g.uniform() * (std::log(1e-1) - std::log(1e-3)));
          y[c] = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus^-1(dt)
          break;
        }
        default: y[c] = rc.mean + rc.sigma * g.normal(); break;
      }
      if (rc.outlier_columns && static_cast<std::size_t>(c) < outlier.size() && outlier[static_cast<std::size_t>(c)]) y[c] *= 6.0f;
    }
  }
}

/// A byte-level BPE vocabulary: the 256 bytes (GPT-2 spelling), merges that build common
/// English words with and without a leading space, then <|endoftext|>, <|im_start|>,
/// <|im_end|>. Returns the tokenizer.json text; `specials` gets the three special ids.
inline std::string tokenizer_json(std::int64_t vocab_size, std::int64_t specials[3]) {
  std::vector<std::string> tokens;
  for (unsigned b = 0; b < 256; ++b) {
    std::string s;
    detail::unicode::append_utf8(detail::unicode::byte_to_code_point(static_cast<std::uint8_t>(b)), s);
    tokens.push_back(s);
  }
  // Train merges on the word list itself, as BPE training does (most frequent adjacent
  // pair first, ties by text), so every merge is reachable by the tokenizer's rank order.
  std::vector<std::string> merges;
  std::vector<std::string> have = tokens;
  static constexpr const char* words[] = {"the", "and", "of", "to", "in", "is", "that", "for", "it", "with", "as", "was",
                                          "on", "be", "at", "by", "this", "had", "not", "are", "but", "from", "or",
                                          "have", "an", "they", "which", "one", "you", "were", "her", "all", "she",
                                          "there", "would", "their", "we", "him", "been", "has", "when", "who", "will",
                                          "more", "no", "if", "out", "so", "said", "what", "up", "its", "about",
                                          "into", "than", "them", "can", "only", "other", "new", "some", "could",
                                          "time", "these", "two", "may", "then", "do", "first", "any", "my", "now",
                                          "such", "like", "our", "over", "man", "me", "even", "most", "made", "after",
                                          "also", "did", "many", "before", "must", "through", "back", "years", "where",
                                          "much", "your", "way", "well", "down", "should", "because", "each", "just",
                                          "those", "people", "model", "weight", "quantize", "layer"};
  std::vector<std::vector<std::string>> corpus;  // symbol sequences, each word with and without a leading space
  for (const char* w : words)
    for (int lead = 0; lead < 2; ++lead) {
      std::vector<std::string> seq;
      if (lead) seq.push_back(tokens[' ']);
      for (const char* c = w; *c; ++c) seq.emplace_back(1, *c);
      corpus.push_back(std::move(seq));
    }
  while (static_cast<std::int64_t>(have.size()) + 3 < vocab_size) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& seq : corpus)
      for (std::size_t i = 0; i + 1 < seq.size(); ++i) ++counts[{seq[i], seq[i + 1]}];
    if (counts.empty()) break;
    auto best = counts.begin();
    for (auto it = counts.begin(); it != counts.end(); ++it)
      if (it->second > best->second) best = it;  // map order breaks ties by text
    const auto [l, r] = best->first;
    merges.push_back(l + " " + r);
    have.push_back(l + r);
    for (auto& seq : corpus) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < seq.size(); ++i) {
        if (i + 1 < seq.size() && seq[i] == l && seq[i + 1] == r) {
          out.push_back(l + r);
          ++i;
        } else {
          out.push_back(seq[i]);
        }
      }
      seq = std::move(out);
    }
  }
  const auto n = static_cast<std::int64_t>(have.size());
  specials[0] = n;
  specials[1] = n + 1;
  specials[2] = n + 2;
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      o += c;
    }
    return o + "\"";
  };
  std::string j = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n";
  const char* sp[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (int i = 0; i < 3; ++i)
    j += std::string("    {\"id\": ") + std::to_string(specials[i]) + ", \"content\": " + q(sp[i]) +
         ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}" +
         (i < 2 ? ",\n" : "\n");
  j += "  ],\n  \"normalizer\": {\"type\": \"NFC\"},\n";
  j += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ";
  std::string rx;
  for (char c : qwen35_split_regex_hf) {
    if (c == '\\' || c == '"') rx += '\\';
    rx += c;
  }
  j += "\"" + rx + "\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]},\n";
  j += "  \"post_processor\": null,\n  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n";
  j += "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n";
  j += "    \"vocab\": {";
  for (std::size_t i = 0; i < have.size(); ++i) j += (i ? ", " : "") + q(have[i]) + ": " + std::to_string(i);
  j += "},\n    \"merges\": [";
  for (std::size_t i = 0; i < merges.size(); ++i) j += (i ? ", " : "") + q(merges[i]);
  j += "]\n  }\n}\n";
  return j;
}

inline result<void> write_text(const std::string& path, const std::string& text) {
  SBGQ_TRY(output_file f, output_file::create(path));
  SBGQ_TRY_VOID(f.write(text.data(), text.size()));
  return f.commit();
}

inline std::string config_json(const synth_preset& p, std::int64_t layers, std::int64_t eos, bool mtp) {
  std::string lt;
  for (std::int64_t l = 0; l < layers; ++l)
    lt += std::string(l ? ", " : "") + ((l + 1) % 4 == 0 ? "\"full_attention\"" : "\"linear_attention\"");
  auto i = [](std::int64_t v) { return std::to_string(v); };
  const std::string tie = p.tied ? "true" : "false";
  std::string j = "{\n  \"architectures\": [\"Qwen3_5ForConditionalGeneration\"],\n  \"model_type\": \"qwen3_5\",\n";
  j += "  \"text_config\": {\n";
  j += "    \"attention_bias\": false, \"attention_dropout\": 0.0, \"attn_output_gate\": true, \"dtype\": \"bfloat16\",\n";
  j += "    \"eos_token_id\": " + i(eos) + ", \"full_attention_interval\": 4, \"head_dim\": " + i(p.head_dim) +
       ", \"hidden_act\": \"silu\", \"hidden_size\": " + i(p.hidden) + ",\n";
  j += "    \"initializer_range\": 0.02, \"intermediate_size\": " + i(p.intermediate) + ",\n";
  j += "    \"layer_types\": [" + lt + "],\n";
  j += "    \"linear_conv_kernel_dim\": 4, \"linear_key_head_dim\": " + i(p.lin_head_dim) + ", \"linear_num_key_heads\": " +
       i(p.lin_k_heads) + ", \"linear_num_value_heads\": " + i(p.lin_v_heads) + ", \"linear_value_head_dim\": " +
       i(p.lin_head_dim) + ",\n";
  j += "    \"max_position_embeddings\": 262144, \"mlp_only_layers\": [], \"model_type\": \"qwen3_5_text\",\n";
  j += "    \"mtp_num_hidden_layers\": " + std::string(mtp ? "1" : "0") + ", \"mtp_use_dedicated_embeddings\": false,\n";
  j += "    \"num_attention_heads\": " + i(p.heads) + ", \"num_hidden_layers\": " + i(layers) + ", \"num_key_value_heads\": " +
       i(p.kv_heads) + ",\n";
  j += "    \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": " + tie + ", \"use_cache\": true, \"vocab_size\": " + i(p.vocab) +
       ", \"mamba_ssm_dtype\": \"float32\",\n";
  j += "    \"rope_parameters\": {\"mrope_interleaved\": true, \"mrope_section\": [" + i(p.mrope_t) + ", " + i(p.mrope_h) + ", " +
       i(p.mrope_w) + "], \"rope_type\": \"default\", \"rope_theta\": 10000000, \"partial_rotary_factor\": 0.25}\n";
  j += "  },\n  \"tie_word_embeddings\": " + tie + ",\n  \"transformers_version\": \"4.57.0.dev0\",\n";
  j += "  \"vision_config\": {\"depth\": 27, \"hidden_size\": 1152, \"model_type\": \"qwen3_5\", \"out_hidden_size\": " +
       i(p.hidden) + "}\n}\n";
  return j;
}

}  // namespace detail::synth

/// Finds a preset by name ("tiny", "0.8b", "2b", "4b", "9b", "27b").
inline const synth_preset* find_synth_preset(std::string_view name) noexcept {
  for (const auto& p : synth_presets)
    if (name == p.name) return &p;
  return nullptr;
}

/// Writes a synthetic checkpoint into directory `dir` (created if missing). Errors:
/// invalid_argument (unknown preset, layers < 1), io_error, and the writers' errors.
inline result<synth_report> synthesize_checkpoint(const std::string& dir, const synth_options& opt) {
  namespace sy = detail::synth;
  const auto t0 = std::chrono::steady_clock::now();
  const synth_preset* p = find_synth_preset(opt.preset);
  if (!p)
    return error(error_code::invalid_argument, "synth", "unknown preset '" + opt.preset + "': expected tiny, 0.8b, 2b, 4b, 9b or 27b");
  const std::int64_t layers = opt.layers < 0 ? p->layers : opt.layers;
  if (layers < 1 || layers > 1024)
    return error(error_code::invalid_argument, "synth", "--layers " + std::to_string(layers) + ": expected 1 to 1024");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return error(error_code::io_error, "synth", "cannot create '" + dir + "': " + ec.message());

  std::int64_t specials[3];
  const std::string tok_json = sy::tokenizer_json(p->vocab, specials);
  const std::string cfg_json = sy::config_json(*p, layers, specials[0], opt.mtp);
  SBGQ_TRY(qwen35_config cfg, parse_qwen35_config(cfg_json));
  SBGQ_TRY_VOID(sy::write_text(dir + "/config.json", cfg_json));
  SBGQ_TRY_VOID(sy::write_text(dir + "/tokenizer.json", tok_json));
  SBGQ_TRY_VOID(sy::write_text(
      dir + "/tokenizer_config.json",
      "{\n  \"add_bos_token\": false,\n  \"bos_token\": null,\n  \"eos_token\": \"<|im_end|>\",\n  \"pad_token\": \"<|endoftext|>\",\n"
      "  \"chat_template\": \"{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\\\n' + message['content'] + '<|im_end|>' + '\\\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\\\n' }}{%- endif %}\",\n"
      "  \"tokenizer_class\": \"Qwen2Tokenizer\",\n  \"unk_token\": null\n}\n"));
  SBGQ_TRY_VOID(sy::write_text(dir + "/generation_config.json",
                               "{\n  \"bos_token_id\": " + std::to_string(specials[0]) + ",\n  \"eos_token_id\": [" +
                                   std::to_string(specials[2]) + ", " + std::to_string(specials[0]) + "],\n  \"pad_token_id\": " +
                                   std::to_string(specials[0]) + "\n}\n"));

  // The tensors in the HF layout (the plan's HF names and shapes), in the order HF shards
  // hold them: by name.
  tensor_plan_options po;
  po.include_mtp = opt.mtp;
  po.tied = p->tied;
  auto plan = qwen35_tensor_plan(cfg, po);
  std::sort(plan.begin(), plan.end(), [](const tensor_plan& a, const tensor_plan& b) { return a.hf_name < b.hf_name; });
  auto dtype_of = [](const tensor_plan& e) {
    const std::string& n = e.hf_name;
    return (n.ends_with("A_log") || n.ends_with("linear_attn.norm.weight")) ? dtype::f32 : dtype::bf16;
  };
  // Greedy sharding by size.
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t cur = 0, total = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const std::uint64_t b = static_cast<std::uint64_t>(plan[i].numel()) * dtype_size(dtype_of(plan[i]));
    if (cur > 0 && cur + b > opt.shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += b;
    total += b;
  }
  // Outlier channels of the residual stream (shared by every reader of it).
  std::vector<char> outlier(static_cast<std::size_t>(cfg.hidden_size), 0);
  {
    sy::rng g(sy::mix(opt.seed ^ 0x5eedull));
    const std::int64_t n_out = std::max<std::int64_t>(2, cfg.hidden_size / 200);
    for (std::int64_t k = 0; k < n_out; ++k) outlier[static_cast<std::size_t>(g.next() % static_cast<std::uint64_t>(cfg.hidden_size))] = 1;
  }
  const std::size_t n_shards = shards.size();
  auto shard_name = [&](std::size_t s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
    return std::string(buf);
  };
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::size_t done = 0;
  progress_reporter report(opt.progress);
  std::vector<float> block;
  std::vector<std::byte> encoded;
  for (std::size_t s = 0; s < n_shards; ++s) {
    safetensors_writer w;
    SBGQ_TRY_VOID(w.add_metadata("format", "pt"));
    for (std::size_t i : shards[s]) {
      std::vector<std::int64_t> shape = plan[i].hf_shape;
      SBGQ_TRY(tensor_shape ts, tensor_shape::make(shape));
      SBGQ_TRY_VOID(w.declare(plan[i].hf_name, dtype_of(plan[i]), ts));
    }
    SBGQ_TRY_VOID(w.begin(dir + "/" + shard_name(s)));
    for (std::size_t i : shards[s]) {
      const tensor_plan& e = plan[i];
      report(progress_event::at(progress_stage::write, static_cast<double>(done) / static_cast<double>(plan.size()))
                 .item(done, plan.size())
                 .on(e.hf_name));
      const std::int64_t cols = e.hf_shape.back();
      const std::int64_t rows = e.numel() / cols;
      const sy::recipe rc = sy::recipe_for(e.hf_name, e.layer, cfg.num_hidden_layers, opt.seed);
      const std::uint64_t tseed = sy::mix(opt.seed ^ sy::name_hash(e.hf_name));
      const dtype dt = dtype_of(e);
      // Blocks of about 4 M values; rows of a block are generated in parallel.
      const std::int64_t rows_per_block = std::max<std::int64_t>(1, (std::int64_t{1} << 22) / cols);
      for (std::int64_t r0 = 0; r0 < rows; r0 += rows_per_block) {
        const std::int64_t nr = std::min(rows_per_block, rows - r0);
        block.resize(static_cast<std::size_t>(nr * cols));
        parallel_for(static_cast<std::size_t>(nr), 16, opt.n_threads, [&](std::size_t b, std::size_t en) {
          sy::generate_rows(rc, tseed, r0 + static_cast<std::int64_t>(b), cols, outlier,
                            std::span<float>(block.data() + b * static_cast<std::size_t>(cols), (en - b) * static_cast<std::size_t>(cols)));
        });
        if (dt == dtype::f32) {
          SBGQ_TRY_VOID(w.write(block.data(), block.size() * sizeof(float)));
        } else {
          encoded.resize(block.size() * 2);
          for (std::size_t k = 0; k < block.size(); ++k) {
            const std::uint16_t h = f32_to_bf16_bits(block[k]);
            std::memcpy(encoded.data() + 2 * k, &h, 2);
          }
          SBGQ_TRY_VOID(w.write(encoded.data(), encoded.size()));
        }
      }
      weight_map.emplace_back(e.hf_name, shard_name(s));
      ++done;
    }
    SBGQ_TRY_VOID(w.finish());
  }
  SBGQ_TRY_VOID(sy::write_text(dir + "/model.safetensors.index.json",
                               safetensors_index_json(total, weight_map)));
  synth_report rep;
  rep.n_tensors = plan.size();
  rep.n_shards = n_shards;
  rep.bytes = total;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

SBGQ_END_NAMESPACE
