// CI mode for C++ tests and benchmark smokes: under CI, a test that cannot run what it is about
// (no root, no BPF, a missing build dependency) fails; elsewhere it skips with the reason. One
// reading of the CI variable for every C++ test (tests/support/ci_mode.py and scripts/common.sh
// are the same rule for Python and shell): true, 1, yes or on, in any case.
#pragma once

#include <cstdlib>
#include <string_view>

namespace threadline::testing {

inline bool IsTruthy(std::string_view value) {
  auto equals = [&](std::string_view word) {
    if (value.size() != word.size()) return false;
    for (size_t i = 0; i < word.size(); ++i) {
      char c = value[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != word[i]) return false;
    }
    return true;
  };
  return equals("true") || equals("1") || equals("yes") || equals("on");
}

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && IsTruthy(ci);
}

}  // namespace threadline::testing
