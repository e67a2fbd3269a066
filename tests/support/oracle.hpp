// The llama.cpp oracle for tests: the prebuilt libggml-base / libggml / libllama of the
// npm package @node-llama-cpp/linux-x64@3.22.1 (llama.cpp v0.5.0), fetched by
// cmake/oracle.cmake into the build tree and dlopen'ed here.
//
// Struct layouts are those of the binary (../shared/spec/llama-c-api.md section 3), which
// differ from the public 2026-08 header; they are checked at load time by fingerprinting
// the default-params functions (section 3.6), so a mismatch fails loudly instead of
// passing garbage pointers.
//
// Tests get one process-wide instance through sbgq::test::oracle(); it throws
// std::runtime_error with a clear message if the libraries are missing or do not match.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbgq::test {

// ---- binary layouts (llama-c-api.md section 3) -----------------------------------------
struct llama_model_params {
  void* devices;
  const void* tensor_buft_overrides;
  std::int32_t n_gpu_layers;
  std::int32_t split_mode;
  std::int32_t load_mode;
  std::int32_t lazy_mode;
  std::int32_t main_gpu;
  const float* tensor_split;
  void* progress_callback;
  void* progress_callback_user_data;
  const void* kv_overrides;
  bool vocab_only;
  bool check_tensors;
  bool use_extra_bufts;
  bool no_host;
  bool no_alloc;
  bool load_mtp;
};
static_assert(sizeof(llama_model_params) == 80);
static_assert(offsetof(llama_model_params, lazy_mode) == 28);
static_assert(offsetof(llama_model_params, tensor_split) == 40);
static_assert(offsetof(llama_model_params, vocab_only) == 72);

using ggml_eval_callback = bool (*)(void* tensor, bool ask, void* user_data);

struct llama_context_params {
  std::uint32_t n_ctx, n_batch, n_ubatch, n_seq_max, n_rs_seq, n_outputs_max, n_outputs_max_per_seq;
  std::int32_t n_threads, n_threads_batch;
  std::int32_t ctx_type, rope_scaling_type, pooling_type, attention_type, flash_attn_type;
  float rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast,
      yarn_beta_slow;
  std::uint32_t yarn_orig_ctx;
  float defrag_thold;
  ggml_eval_callback cb_eval;
  void* cb_eval_user_data;
  std::int32_t type_k, type_v;
  void* abort_callback;
  void* abort_callback_data;
  bool embeddings, offload_kqv, no_perf, op_offload, swa_full, kv_unified;
  void* samplers;
  std::size_t n_samplers;
  void* ctx_other;
};
static_assert(sizeof(llama_context_params) == 160);
static_assert(offsetof(llama_context_params, flash_attn_type) == 52);
static_assert(offsetof(llama_context_params, cb_eval) == 88);
static_assert(offsetof(llama_context_params, type_k) == 104);
static_assert(offsetof(llama_context_params, embeddings) == 128);
static_assert(offsetof(llama_context_params, samplers) == 136);

struct llama_batch {
  std::int32_t n_tokens;
  std::int32_t* token;
  float* embd;
  std::int32_t* pos;
  std::int32_t* n_seq_id;
  std::int32_t** seq_id;
  std::int8_t* logits;
};
static_assert(sizeof(llama_batch) == 56);

struct llama_model_imatrix_data {
  const char* name;
  const float* data;
  std::size_t size;  // floats
};
struct llama_model_tensor_override {
  const char* pattern;
  std::int32_t type;
};
// llama.h: struct llama_model_kv_override (264 bytes): tag @0 (0 INT, 1 FLOAT, 2 BOOL,
// 3 STR), char key[128] @4, union { int64_t val_i64; double val_f64; bool val_bool;
// char val_str[128]; } @136 (llama-c-api.md section 3.4). Arrays end with key[0] == 0.
struct llama_model_kv_override {
  std::int32_t tag;
  char key[128];
  union {
    std::int64_t val_i64;
    double val_f64;
    bool val_bool;
    char val_str[128];
  };
};
static_assert(sizeof(llama_model_kv_override) == 264);
static_assert(offsetof(llama_model_kv_override, val_i64) == 136);
struct llama_model_quantize_params {
  std::int32_t nthread;
  std::int32_t ftype;
  std::int32_t output_tensor_type;
  std::int32_t token_embedding_type;
  bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
  const llama_model_imatrix_data* imatrix;
  const void* kv_overrides;
  const llama_model_tensor_override* tt_overrides;
  const std::int32_t* prune_layers;
  std::size_t max_buf_size;
};
static_assert(sizeof(llama_model_quantize_params) == 64);
static_assert(offsetof(llama_model_quantize_params, imatrix) == 24);
static_assert(offsetof(llama_model_quantize_params, max_buf_size) == 56);

// struct ggml_tensor of this release (ggml/include/ggml.h: GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS
// 64, GGML_MAX_SRC 10, GGML_MAX_NAME 64), for graph callbacks. Only read from; the layout
// is verified at run time by the tests that use it (weight names in src[0], consistent ne).
struct ggml_tensor_layout {
  std::int32_t type;
  void* buffer;
  std::int64_t ne[4];
  std::size_t nb[4];
  std::int32_t op;
  std::int32_t op_params[16];
  std::int32_t flags;
  const ggml_tensor_layout* src[10];
  const ggml_tensor_layout* view_src;
  std::size_t view_offs;
  void* data;
  char name[64];
  void* extra;
  char padding[8];
};
static_assert(offsetof(ggml_tensor_layout, op) == 80);
static_assert(offsetof(ggml_tensor_layout, src) == 152);
static_assert(offsetof(ggml_tensor_layout, data) == 248);
static_assert(offsetof(ggml_tensor_layout, name) == 256);
static_assert(sizeof(ggml_tensor_layout) == 336);

struct gguf_init_params {
  bool no_alloc;
  void** ctx;
};
static_assert(sizeof(gguf_init_params) == 16);

// ggml.h: struct ggml_init_params { size_t mem_size; void * mem_buffer; bool no_alloc; },
// passed by value to ggml_init (used to build real ggml_tensors for gguf_add_tensor).
struct ggml_init_params {
  std::size_t mem_size;
  void* mem_buffer;
  bool no_alloc;
};
static_assert(sizeof(ggml_init_params) == 24);

// ---- the loaded libraries -------------------------------------------------------------
class llama_oracle {
 public:
  // libggml-base: type helpers and reference quantizers
  const char* (*ggml_type_name)(int) = nullptr;
  std::int64_t (*ggml_blck_size)(int) = nullptr;
  std::size_t (*ggml_type_size)(int) = nullptr;
  std::size_t (*ggml_row_size)(int, std::int64_t) = nullptr;
  std::size_t (*ggml_quantize_chunk)(int, const float*, void*, std::int64_t, std::int64_t,
                                     std::int64_t, const float*) = nullptr;
  bool (*ggml_validate_row_data)(int, const void*, std::size_t) = nullptr;
  void (*ggml_fp32_to_fp16_row)(const float*, std::uint16_t*, std::int64_t) = nullptr;
  void (*ggml_fp16_to_fp32_row)(const std::uint16_t*, float*, std::int64_t) = nullptr;
  void (*ggml_fp32_to_bf16_row)(const float*, std::uint16_t*, std::int64_t) = nullptr;
  void (*ggml_bf16_to_fp32_row)(const std::uint16_t*, float*, std::int64_t) = nullptr;
  const char* (*ggml_op_name)(int) = nullptr;
  void (*ggml_log_set)(void*, void*) = nullptr;

  // libggml-base: per-format reference codecs (ggml-quant-algorithms.md section 2)
  std::size_t (*quantize_q8_0)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_q2_K)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_q3_K)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_q4_K)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_q5_K)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_q6_K)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_iq4_nl)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  std::size_t (*quantize_iq4_xs)(const float*, void*, std::int64_t, std::int64_t, const float*) = nullptr;
  void (*quantize_row_q8_0_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q2_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q3_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q4_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q5_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q6_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_iq4_nl_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_iq4_xs_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*quantize_row_q8_K_ref)(const float*, void*, std::int64_t) = nullptr;
  void (*dequantize_row_q8_0)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q2_K)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q3_K)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q4_K)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q5_K)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q6_K)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_iq4_nl)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_iq4_xs)(const void*, float*, std::int64_t) = nullptr;
  void (*dequantize_row_q8_K)(const void*, float*, std::int64_t) = nullptr;

  // libggml-base: gguf reader
  void* (*gguf_init_from_file)(const char*, gguf_init_params) = nullptr;
  void (*gguf_free)(void*) = nullptr;
  std::uint32_t (*gguf_get_version)(const void*) = nullptr;
  std::size_t (*gguf_get_alignment)(const void*) = nullptr;
  std::size_t (*gguf_get_data_offset)(const void*) = nullptr;
  std::int64_t (*gguf_get_n_kv)(const void*) = nullptr;
  std::int64_t (*gguf_find_key)(const void*, const char*) = nullptr;
  const char* (*gguf_get_key)(const void*, std::int64_t) = nullptr;
  int (*gguf_get_kv_type)(const void*, std::int64_t) = nullptr;
  int (*gguf_get_arr_type)(const void*, std::int64_t) = nullptr;
  const void* (*gguf_get_val_data)(const void*, std::int64_t) = nullptr;
  const char* (*gguf_get_val_str)(const void*, std::int64_t) = nullptr;
  std::size_t (*gguf_get_arr_n)(const void*, std::int64_t) = nullptr;
  const void* (*gguf_get_arr_data)(const void*, std::int64_t) = nullptr;
  const char* (*gguf_get_arr_str)(const void*, std::int64_t, std::size_t) = nullptr;
  std::int64_t (*gguf_get_n_tensors)(const void*) = nullptr;
  std::int64_t (*gguf_find_tensor)(const void*, const char*) = nullptr;
  std::size_t (*gguf_get_tensor_offset)(const void*, std::int64_t) = nullptr;
  const char* (*gguf_get_tensor_name)(const void*, std::int64_t) = nullptr;
  const std::int64_t* (*gguf_get_tensor_ne)(const void*, std::int64_t) = nullptr;
  int (*gguf_get_tensor_type)(const void*, std::int64_t) = nullptr;
  std::size_t (*gguf_get_tensor_size)(const void*, std::int64_t) = nullptr;
  // gguf writer (to produce files "llama.cpp accepts" for our reader)
  void* (*gguf_init_empty)() = nullptr;
  void (*gguf_set_val_u8)(void*, const char*, std::uint8_t) = nullptr;
  void (*gguf_set_val_i8)(void*, const char*, std::int8_t) = nullptr;
  void (*gguf_set_val_u16)(void*, const char*, std::uint16_t) = nullptr;
  void (*gguf_set_val_i16)(void*, const char*, std::int16_t) = nullptr;
  void (*gguf_set_val_u32)(void*, const char*, std::uint32_t) = nullptr;
  void (*gguf_set_val_i32)(void*, const char*, std::int32_t) = nullptr;
  void (*gguf_set_val_f32)(void*, const char*, float) = nullptr;
  void (*gguf_set_val_u64)(void*, const char*, std::uint64_t) = nullptr;
  void (*gguf_set_val_i64)(void*, const char*, std::int64_t) = nullptr;
  void (*gguf_set_val_f64)(void*, const char*, double) = nullptr;
  void (*gguf_set_val_bool)(void*, const char*, bool) = nullptr;
  void (*gguf_set_val_str)(void*, const char*, const char*) = nullptr;
  void (*gguf_set_arr_data)(void*, const char*, int, const void*, std::size_t) = nullptr;
  void (*gguf_set_arr_str)(void*, const char*, const char**, std::size_t) = nullptr;
  bool (*gguf_write_to_file)(const void*, const char*, bool) = nullptr;
  // gguf extras: parse from memory, type names, meta size, tensors built with ggml
  void* (*gguf_init_from_buffer)(const void*, std::size_t, gguf_init_params) = nullptr;
  const char* (*gguf_type_name)(int) = nullptr;
  std::size_t (*gguf_get_meta_size)(const void*) = nullptr;
  void (*gguf_add_tensor)(void*, const void*) = nullptr;
  void (*gguf_set_tensor_data)(void*, const char*, const void*) = nullptr;
  void* (*ggml_init)(ggml_init_params) = nullptr;
  void (*ggml_free)(void*) = nullptr;
  void* (*ggml_new_tensor)(void*, int, int, const std::int64_t*) = nullptr;
  void* (*ggml_set_name)(void*, const char*) = nullptr;
  void* (*ggml_get_data)(const void*) = nullptr;
  std::size_t (*ggml_nbytes)(const void*) = nullptr;
  std::size_t (*ggml_tensor_overhead)() = nullptr;

  // libggml
  void (*ggml_backend_load_all_from_path)(const char*) = nullptr;

  // libllama
  void (*llama_backend_init)() = nullptr;
  void (*llama_log_set)(void*, void*) = nullptr;
  llama_model_params (*llama_model_default_params)() = nullptr;
  llama_context_params (*llama_context_default_params)() = nullptr;
  llama_model_quantize_params (*llama_model_quantize_default_params)() = nullptr;
  void* (*llama_model_load_from_file)(const char*, llama_model_params) = nullptr;
  void (*llama_model_free)(void*) = nullptr;
  const void* (*llama_model_get_vocab)(const void*) = nullptr;
  std::int32_t (*llama_model_n_embd)(const void*) = nullptr;
  std::int32_t (*llama_model_n_layer)(const void*) = nullptr;
  void* (*llama_init_from_model)(void*, llama_context_params) = nullptr;
  void (*llama_free)(void*) = nullptr;
  void* (*llama_get_memory)(const void*) = nullptr;
  void (*llama_memory_clear)(void*, bool) = nullptr;
  std::int32_t (*llama_vocab_n_tokens)(const void*) = nullptr;
  std::int32_t (*llama_tokenize)(const void*, const char*, std::int32_t, std::int32_t*, std::int32_t,
                                 bool, bool) = nullptr;
  std::int32_t (*llama_token_to_piece)(const void*, std::int32_t, char*, std::int32_t, std::int32_t,
                                       bool) = nullptr;
  llama_batch (*llama_batch_init)(std::int32_t, std::int32_t, std::int32_t) = nullptr;
  void (*llama_batch_free)(llama_batch) = nullptr;
  std::int32_t (*llama_decode)(void*, llama_batch) = nullptr;
  float* (*llama_get_logits_ith)(void*, std::int32_t) = nullptr;
  std::uint32_t (*llama_model_quantize)(const char*, const char*, const llama_model_quantize_params*) = nullptr;
  const char* (*llama_vocab_get_text)(const void*, std::int32_t) = nullptr;
  int (*llama_vocab_get_attr)(const void*, std::int32_t) = nullptr;
  // libllama internals (C++ symbols, exported by this build): the Unicode category flags
  // of one code point (unicode_cpt_flags, 16 bits returned in a register) and the
  // pre-tokenizer split (same libstdc++ ABI as the tests).
  std::uint16_t (*unicode_cpt_flags_from_cpt)(std::uint32_t) = nullptr;
  std::vector<std::string> (*unicode_regex_split)(const std::string&, const std::vector<std::string>&, bool) = nullptr;

  std::string bins_dir;
  /// The last messages llama.cpp logged at WARN or ERROR level (for failure messages).
  std::string last_log;

  explicit llama_oracle(const std::string& bins) : bins_dir(bins) {
    if (bins.empty())
      throw std::runtime_error(
          "llama.cpp oracle not available: cmake could not fetch @node-llama-cpp/linux-x64 "
          "(is npm installed and the registry reachable?)");
    base_ = open("libggml-base.so");
    ggml_ = open("libggml.v0.5.0.so");
    llama_ = open("libllama.v0.5.0.so");
    resolve_all();
    check_layouts();
    ggml_log_set(reinterpret_cast<void*>(&log_cb), this);
    llama_log_set(reinterpret_cast<void*>(&log_cb), this);
    ggml_backend_load_all_from_path(bins_dir.c_str());
    llama_backend_init();
  }
  llama_oracle(const llama_oracle&) = delete;
  llama_oracle& operator=(const llama_oracle&) = delete;
  // The libraries stay loaded until exit: unloading libllama while its static
  // destructors are registered is not worth the trouble in a test process.

 private:
  static void log_cb(int level, const char* text, void* ud) {
    auto* self = static_cast<llama_oracle*>(ud);
    if (level >= 3 && level != 5) {  // WARN, ERROR (5 = CONT continues the previous line)
      self->last_log += text;
      if (self->last_log.size() > 8192) self->last_log.erase(0, self->last_log.size() - 8192);
    }
  }
  void* open(const char* name) {
    const std::string path = bins_dir + "/" + name;
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) throw std::runtime_error("dlopen(" + path + ") failed: " + ::dlerror());
    return h;
  }
  template <class F>
  void sym(void* lib, F& fn, const char* name) {
    void* p = ::dlsym(lib, name);
    if (!p) throw std::runtime_error(std::string("oracle symbol not found: ") + name);
    fn = reinterpret_cast<F>(p);
  }
  void resolve_all() {
#define SBGQ_SYM(lib, name) sym(lib, name, #name)
    SBGQ_SYM(base_, ggml_type_name);
    SBGQ_SYM(base_, ggml_blck_size);
    SBGQ_SYM(base_, ggml_type_size);
    SBGQ_SYM(base_, ggml_row_size);
    SBGQ_SYM(base_, ggml_quantize_chunk);
    SBGQ_SYM(base_, ggml_validate_row_data);
    SBGQ_SYM(base_, ggml_fp32_to_fp16_row);
    SBGQ_SYM(base_, ggml_fp16_to_fp32_row);
    SBGQ_SYM(base_, ggml_fp32_to_bf16_row);
    SBGQ_SYM(base_, ggml_bf16_to_fp32_row);
    SBGQ_SYM(base_, ggml_op_name);
    SBGQ_SYM(base_, ggml_log_set);
    SBGQ_SYM(base_, quantize_q8_0);
    SBGQ_SYM(base_, quantize_q2_K);
    SBGQ_SYM(base_, quantize_q3_K);
    SBGQ_SYM(base_, quantize_q4_K);
    SBGQ_SYM(base_, quantize_q5_K);
    SBGQ_SYM(base_, quantize_q6_K);
    SBGQ_SYM(base_, quantize_iq4_nl);
    SBGQ_SYM(base_, quantize_iq4_xs);
    SBGQ_SYM(base_, quantize_row_q8_0_ref);
    SBGQ_SYM(base_, quantize_row_q2_K_ref);
    SBGQ_SYM(base_, quantize_row_q3_K_ref);
    SBGQ_SYM(base_, quantize_row_q4_K_ref);
    SBGQ_SYM(base_, quantize_row_q5_K_ref);
    SBGQ_SYM(base_, quantize_row_q6_K_ref);
    SBGQ_SYM(base_, quantize_row_iq4_nl_ref);
    SBGQ_SYM(base_, quantize_row_iq4_xs_ref);
    SBGQ_SYM(base_, quantize_row_q8_K_ref);
    SBGQ_SYM(base_, dequantize_row_q8_0);
    SBGQ_SYM(base_, dequantize_row_q2_K);
    SBGQ_SYM(base_, dequantize_row_q3_K);
    SBGQ_SYM(base_, dequantize_row_q4_K);
    SBGQ_SYM(base_, dequantize_row_q5_K);
    SBGQ_SYM(base_, dequantize_row_q6_K);
    SBGQ_SYM(base_, dequantize_row_iq4_nl);
    SBGQ_SYM(base_, dequantize_row_iq4_xs);
    SBGQ_SYM(base_, dequantize_row_q8_K);
    SBGQ_SYM(base_, gguf_init_from_file);
    SBGQ_SYM(base_, gguf_free);
    SBGQ_SYM(base_, gguf_get_version);
    SBGQ_SYM(base_, gguf_get_alignment);
    SBGQ_SYM(base_, gguf_get_data_offset);
    SBGQ_SYM(base_, gguf_get_n_kv);
    SBGQ_SYM(base_, gguf_find_key);
    SBGQ_SYM(base_, gguf_get_key);
    SBGQ_SYM(base_, gguf_get_kv_type);
    SBGQ_SYM(base_, gguf_get_arr_type);
    SBGQ_SYM(base_, gguf_get_val_data);
    SBGQ_SYM(base_, gguf_get_val_str);
    SBGQ_SYM(base_, gguf_get_arr_n);
    SBGQ_SYM(base_, gguf_get_arr_data);
    SBGQ_SYM(base_, gguf_get_arr_str);
    SBGQ_SYM(base_, gguf_get_n_tensors);
    SBGQ_SYM(base_, gguf_find_tensor);
    SBGQ_SYM(base_, gguf_get_tensor_offset);
    SBGQ_SYM(base_, gguf_get_tensor_name);
    SBGQ_SYM(base_, gguf_get_tensor_ne);
    SBGQ_SYM(base_, gguf_get_tensor_type);
    SBGQ_SYM(base_, gguf_get_tensor_size);
    SBGQ_SYM(base_, gguf_init_empty);
    SBGQ_SYM(base_, gguf_set_val_u8);
    SBGQ_SYM(base_, gguf_set_val_i8);
    SBGQ_SYM(base_, gguf_set_val_u16);
    SBGQ_SYM(base_, gguf_set_val_i16);
    SBGQ_SYM(base_, gguf_set_val_u32);
    SBGQ_SYM(base_, gguf_set_val_i32);
    SBGQ_SYM(base_, gguf_set_val_f32);
    SBGQ_SYM(base_, gguf_set_val_u64);
    SBGQ_SYM(base_, gguf_set_val_i64);
    SBGQ_SYM(base_, gguf_set_val_f64);
    SBGQ_SYM(base_, gguf_set_val_bool);
    SBGQ_SYM(base_, gguf_set_val_str);
    SBGQ_SYM(base_, gguf_set_arr_data);
    SBGQ_SYM(base_, gguf_set_arr_str);
    SBGQ_SYM(base_, gguf_write_to_file);
    SBGQ_SYM(base_, gguf_init_from_buffer);
    SBGQ_SYM(base_, gguf_type_name);
    SBGQ_SYM(base_, gguf_get_meta_size);
    SBGQ_SYM(base_, gguf_add_tensor);
    SBGQ_SYM(base_, gguf_set_tensor_data);
    SBGQ_SYM(base_, ggml_init);
    SBGQ_SYM(base_, ggml_free);
    SBGQ_SYM(base_, ggml_new_tensor);
    SBGQ_SYM(base_, ggml_set_name);
    SBGQ_SYM(base_, ggml_get_data);
    SBGQ_SYM(base_, ggml_nbytes);
    SBGQ_SYM(base_, ggml_tensor_overhead);
    SBGQ_SYM(ggml_, ggml_backend_load_all_from_path);
    SBGQ_SYM(llama_, llama_backend_init);
    SBGQ_SYM(llama_, llama_log_set);
    SBGQ_SYM(llama_, llama_model_default_params);
    SBGQ_SYM(llama_, llama_context_default_params);
    SBGQ_SYM(llama_, llama_model_quantize_default_params);
    SBGQ_SYM(llama_, llama_model_load_from_file);
    SBGQ_SYM(llama_, llama_model_free);
    SBGQ_SYM(llama_, llama_model_get_vocab);
    SBGQ_SYM(llama_, llama_model_n_embd);
    SBGQ_SYM(llama_, llama_model_n_layer);
    SBGQ_SYM(llama_, llama_init_from_model);
    SBGQ_SYM(llama_, llama_free);
    SBGQ_SYM(llama_, llama_get_memory);
    SBGQ_SYM(llama_, llama_memory_clear);
    SBGQ_SYM(llama_, llama_vocab_n_tokens);
    SBGQ_SYM(llama_, llama_tokenize);
    SBGQ_SYM(llama_, llama_token_to_piece);
    SBGQ_SYM(llama_, llama_batch_init);
    SBGQ_SYM(llama_, llama_batch_free);
    SBGQ_SYM(llama_, llama_decode);
    SBGQ_SYM(llama_, llama_get_logits_ith);
    SBGQ_SYM(llama_, llama_model_quantize);
    SBGQ_SYM(llama_, llama_vocab_get_text);
    SBGQ_SYM(llama_, llama_vocab_get_attr);
    sym(llama_, unicode_cpt_flags_from_cpt, "_Z26unicode_cpt_flags_from_cptj");
    sym(llama_, unicode_regex_split,
        "_Z19unicode_regex_splitRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKSt6vectorIS4_SaIS4_EEb");
#undef SBGQ_SYM
  }
  // llama-c-api.md section 3.6: fingerprint the defaults of this binary.
  void check_layouts() {
    const llama_model_params mp = llama_model_default_params();
    const bool mp_ok = mp.n_gpu_layers == -1 && mp.split_mode == 1 && mp.load_mode == -1 &&
                       mp.lazy_mode == 1 && mp.main_gpu == 0 && mp.use_extra_bufts &&
                       !mp.vocab_only && !mp.check_tensors && !mp.no_host && !mp.no_alloc &&
                       !mp.load_mtp;
    const llama_context_params cp = llama_context_default_params();
    const bool cp_ok = cp.n_ctx == 512 && cp.n_batch == 2048 && cp.n_ubatch == 512 &&
                       cp.n_seq_max == 1 && cp.n_outputs_max_per_seq == 1 &&
                       cp.yarn_ext_factor == -1.0f && cp.defrag_thold == -1.0f && cp.type_k == 1 &&
                       cp.type_v == 1 && !cp.embeddings && cp.offload_kqv && cp.no_perf &&
                       cp.op_offload && cp.swa_full && !cp.kv_unified;
    const llama_model_quantize_params qp = llama_model_quantize_default_params();
    const bool qp_ok = qp.ftype == 7 && qp.output_tensor_type == 43 &&
                       qp.token_embedding_type == 43 && qp.quantize_output_tensor &&
                       qp.max_buf_size == (std::size_t{8} << 30);
    if (!mp_ok || !cp_ok || !qp_ok)
      throw std::runtime_error(std::string("llama.cpp oracle struct layout mismatch:") +
                               (mp_ok ? "" : " llama_model_params") +
                               (cp_ok ? "" : " llama_context_params") +
                               (qp_ok ? "" : " llama_model_quantize_params"));
  }

  void* base_ = nullptr;
  void* ggml_ = nullptr;
  void* llama_ = nullptr;
};

/// The process-wide oracle (loaded on first use; throws if unavailable).
inline llama_oracle& oracle() {
  static llama_oracle o(SBGQ_ORACLE_BINS);
  return o;
}

// ---- RAII helpers over the oracle ---------------------------------------------------------

/// A gguf_context read by llama.cpp's own reader (metadata only).
class oracle_gguf {
 public:
  explicit oracle_gguf(const std::string& path) {
    ctx_ = oracle().gguf_init_from_file(path.c_str(), gguf_init_params{true, nullptr});
  }
  ~oracle_gguf() {
    if (ctx_) oracle().gguf_free(ctx_);
  }
  oracle_gguf(const oracle_gguf&) = delete;
  oracle_gguf& operator=(const oracle_gguf&) = delete;
  bool ok() const { return ctx_ != nullptr; }
  void* get() const { return ctx_; }

 private:
  void* ctx_ = nullptr;
};

/// A model loaded by libllama, with a context for decoding.
class oracle_model {
 public:
  struct options {
    std::uint32_t n_ctx = 512;
    std::uint32_t n_batch = 512;
    int n_threads = 2;
    bool vocab_only = false;
    bool exact = true;  ///< flash attention off and an F32 KV cache (llama-c-api.md 4.5)
    ggml_eval_callback cb_eval = nullptr;  ///< graph callback (imatrix-style collection)
    void* cb_eval_user_data = nullptr;
  };
  explicit oracle_model(const std::string& path) : oracle_model(path, options{}) {}
  oracle_model(const std::string& path, const options& opt) {
    auto& o = oracle();
    o.last_log.clear();
    llama_model_params mp = o.llama_model_default_params();
    mp.vocab_only = opt.vocab_only;
    mp.load_mode = 0;  // plain reads: the test may rewrite the file afterwards
    model_ = o.llama_model_load_from_file(path.c_str(), mp);
    if (!model_) throw std::runtime_error("libllama could not load '" + path + "': " + o.last_log);
    vocab_ = o.llama_model_get_vocab(model_);
    if (opt.vocab_only) return;
    llama_context_params cp = o.llama_context_default_params();
    cp.n_ctx = opt.n_ctx;
    cp.n_batch = cp.n_ubatch = opt.n_batch;
    cp.n_threads = cp.n_threads_batch = opt.n_threads;
    if (opt.exact) {
      cp.flash_attn_type = 0;
      cp.type_k = cp.type_v = 0;
    }
    cp.cb_eval = opt.cb_eval;
    cp.cb_eval_user_data = opt.cb_eval_user_data;
    ctx_ = o.llama_init_from_model(model_, cp);
    if (!ctx_) throw std::runtime_error("libllama could not create a context for '" + path + "': " + o.last_log);
  }
  ~oracle_model() {
    auto& o = oracle();
    if (ctx_) o.llama_free(ctx_);
    if (model_) o.llama_model_free(model_);
  }
  oracle_model(const oracle_model&) = delete;
  oracle_model& operator=(const oracle_model&) = delete;

  void* model() const { return model_; }
  void* context() const { return ctx_; }
  const void* vocab() const { return vocab_; }
  int n_vocab() const { return oracle().llama_vocab_n_tokens(vocab_); }

  /// llama_tokenize with add_special = false.
  std::vector<std::int32_t> tokenize(const std::string& text, bool parse_special = true) const {
    auto& o = oracle();
    const std::int32_t n = o.llama_tokenize(vocab_, text.data(), static_cast<std::int32_t>(text.size()),
                                            nullptr, 0, false, parse_special);
    std::vector<std::int32_t> toks(static_cast<std::size_t>(n < 0 ? -n : n));
    if (toks.empty()) return toks;
    const std::int32_t m = o.llama_tokenize(vocab_, text.data(), static_cast<std::int32_t>(text.size()),
                                            toks.data(), static_cast<std::int32_t>(toks.size()), false,
                                            parse_special);
    if (m < 0) throw std::runtime_error("llama_tokenize failed");
    toks.resize(static_cast<std::size_t>(m));
    return toks;
  }

  void clear() { oracle().llama_memory_clear(oracle().llama_get_memory(ctx_), true); }

  /// Decodes tokens at positions pos0.. as one batch (sequence 0) with the logits of the
  /// last token only: prompt processing, as llama-bench's pp test runs it.
  void prefill(const std::vector<std::int32_t>& tokens, int pos0 = 0) { submit(tokens, pos0, false); }

  /// Decodes tokens at positions pos0.. as one batch (sequence 0) and returns the logits
  /// of every token, row-major [n_tokens][n_vocab].
  std::vector<float> decode(const std::vector<std::int32_t>& tokens, int pos0 = 0) {
    auto& o = oracle();
    submit(tokens, pos0, true);
    const int n = static_cast<int>(tokens.size()), nv = n_vocab();
    std::vector<float> out(static_cast<std::size_t>(n) * static_cast<std::size_t>(nv));
    for (int i = 0; i < n; ++i) {
      const float* row = o.llama_get_logits_ith(ctx_, i);
      std::memcpy(out.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(nv), row,
                  sizeof(float) * static_cast<std::size_t>(nv));
    }
    return out;
  }

 private:
  /// One llama_decode of tokens at positions pos0.. (sequence 0), with logits for every
  /// token or only the last.
  void submit(const std::vector<std::int32_t>& tokens, int pos0, bool all_logits) {
    auto& o = oracle();
    const int n = static_cast<int>(tokens.size());
    llama_batch b = o.llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; ++i) {
      b.token[i] = tokens[static_cast<std::size_t>(i)];
      b.pos[i] = pos0 + i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = all_logits || i + 1 == n ? 1 : 0;
    }
    b.n_tokens = n;
    const std::int32_t rc = o.llama_decode(ctx_, b);
    o.llama_batch_free(b);
    if (rc != 0) throw std::runtime_error("llama_decode returned " + std::to_string(rc) + ": " + o.last_log);
  }

  void* model_ = nullptr;
  void* ctx_ = nullptr;
  const void* vocab_ = nullptr;
};

}  // namespace sbgq::test
