// The K-quants Q2_K..Q6_K and their activation format Q8_K: one header per format
// (q2_k.hpp ... q8_k.hpp, sharing the scale searches of k_quant_common.hpp), gathered
// here for users who want all of them.
#pragma once

#include "q2_k.hpp"
#include "q3_k.hpp"
#include "q4_k.hpp"
#include "q5_k.hpp"
#include "q6_k.hpp"
#include "q8_k.hpp"
