// A tiny self-contained test harness for the C++ unit tests (run by ctest): CHECK macros and a test registry.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace harness {

struct Test {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Test>& registry() {
  static std::vector<Test> tests;
  return tests;
}
inline int& failures() {
  static int n = 0;
  return n;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

inline int run_all() {
  for (const auto& t : registry()) {
    const int before = failures();
    t.fn();
    std::printf("%s %s\n", failures() == before ? "PASS" : "FAIL", t.name);
  }
  std::printf("%d failure(s) in %zu test(s)\n", failures(), registry().size());
  return failures() == 0 ? 0 : 1;
}

}  // namespace harness

#define TEST(name)                                             \
  static void name();                                          \
  static harness::Register name##_registered(#name, &name);   \
  static void name()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);     \
      ++harness::failures();                                                     \
    }                                                                            \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                          \
  do {                                                                                                 \
    const double va_ = (a), vb_ = (b);                                                                 \
    if (!(std::fabs(va_ - vb_) <= (tol))) {                                                            \
      std::printf("  %s:%d: CHECK_NEAR(%s, %s) failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, va_, \
                  vb_);                                                                                \
      ++harness::failures();                                                                           \
    }                                                                                                  \
  } while (0)

#define CHECK_THROWS(stmt)                                                          \
  do {                                                                              \
    bool thrown_ = false;                                                           \
    try {                                                                           \
      stmt;                                                                         \
    } catch (const std::exception&) {                                               \
      thrown_ = true;                                                               \
    }                                                                               \
    if (!thrown_) {                                                                 \
      std::printf("  %s:%d: %s did not throw\n", __FILE__, __LINE__, #stmt);        \
      ++harness::failures();                                                        \
    }                                                                               \
  } while (0)

#define TEST_MAIN() \
  int main() { return harness::run_all(); }
