// The tests' shared precompiled header (see tests/CMakeLists.txt): the heavy third-party
// headers (a PCH holding every sbgq header too was measured slower: its 390 MB image costs
// more to load than the parsing it saves). Test files still include what they use.
#pragma once

#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <simdjson.h>
#include <string>
#include <vector>
