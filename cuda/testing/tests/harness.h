// A small test runner for the execution model and the kernels on it: each case runs in a forked child, so a
// deadlocked, crashing or racy case cannot take the others down, and its output (ThreadSanitizer's reports
// included) is judged per case. Cases register themselves with EMU_TEST / EMU_PLANTED_RACE. Test-only.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "common/primitives.cuh"

namespace fastlstm::emu::testing {

enum class Expect {
  pass,   // exits 0, no sanitizer report
  race,   // a planted race: ThreadSanitizer reports it (TSan build); otherwise the case shows a wrong result
  abort,  // the process aborts (the watchdog), printing `symbol`
};

struct Case {
  const char* name;
  void (*fn)();
  Expect expect;
  const char* symbol;  // race: the kernel the report must name
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Registrar {
  Registrar(const char* name, void (*fn)(), Expect e, const char* symbol = "") {
    registry().push_back({name, fn, e, symbol});
  }
};

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::printf("FAILED at %s:%d: %s\n", file, line, what.c_str());
  std::fflush(stdout);
  std::_Exit(1);
}

// The marker a planted-race case prints when a schedule shows the wrong result (the plain build's proof).
inline void caught(const std::string& how) {
  std::printf("CAUGHT: %s\n", how.c_str());
  std::fflush(stdout);
}

// "file:line" of the first line of `file` that contains `marker`: the sites a deadlock report must name, found
// by a comment next to them rather than by a line number that formatting would move.
inline std::string site_of(const char* file, const char* marker) {
  std::FILE* f = std::fopen(file, "r");
  if (f == nullptr) fail(__FILE__, __LINE__, std::string("cannot read ") + file);
  char buf[1024];
  for (int line = 1; std::fgets(buf, sizeof buf, f) != nullptr; ++line) {
    if (std::string(buf).find(marker) != std::string::npos) {
      std::fclose(f);
      const std::string path(file);
      return path.substr(path.find_last_of('/') + 1) + ":" + std::to_string(line);
    }
  }
  std::fclose(f);
  fail(__FILE__, __LINE__, std::string("no line with ") + marker);
}

// max |got - want| / (atol + rtol |want|) over the arrays; <= 1 passes. NaN in got fails.
inline double tolerance_ratio(const float* got, const double* want, std::size_t n, double rtol, double atol,
                              std::size_t* worst = nullptr) {
  double r = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double e = std::isnan(got[i]) ? INFINITY : std::fabs(got[i] - want[i]) / (atol + rtol * std::fabs(want[i]));
    if (i == 0 || e > r) {
      r = e;
      if (worst != nullptr) *worst = i;
    }
  }
  return r;
}

}  // namespace fastlstm::emu::testing

#define EMU_CONCAT2(a, b) a##b
#define EMU_CONCAT(a, b) EMU_CONCAT2(a, b)
#define EMU_TEST(name)                                                                                             \
  static void name();                                                                                              \
  static const ::fastlstm::emu::testing::Registrar EMU_CONCAT(reg_, name)(#name, name,                             \
                                                                          ::fastlstm::emu::testing::Expect::pass); \
  static void name()
#define EMU_PLANTED_RACE(name, symbol)                                     \
  static void name();                                                      \
  static const ::fastlstm::emu::testing::Registrar EMU_CONCAT(reg_, name)( \
      #name, name, ::fastlstm::emu::testing::Expect::race, symbol);        \
  static void name()

#define EMU_TEST_ABORTS(name, text)                                        \
  static void name();                                                      \
  static const ::fastlstm::emu::testing::Registrar EMU_CONCAT(reg_, name)( \
      #name, name, ::fastlstm::emu::testing::Expect::abort, text);         \
  static void name()

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) ::fastlstm::emu::testing::fail(__FILE__, __LINE__, #cond); \
  } while (0)
#define CHECK_EQ(a, b)                                                                                              \
  do {                                                                                                              \
    const auto va_ = (a);                                                                                           \
    const auto vb_ = (b);                                                                                           \
    if (!(va_ == vb_))                                                                                              \
      ::fastlstm::emu::testing::fail(                                                                               \
          __FILE__, __LINE__, std::string(#a " == " #b ": ") + std::to_string(va_) + " vs " + std::to_string(vb_)); \
  } while (0)
// The statement must fault the launch with a report that contains every given piece of text.
#define EXPECT_FAULT(stmt, ...)                                                                       \
  do {                                                                                                \
    try {                                                                                             \
      stmt;                                                                                           \
    } catch (const ::fastlstm::emu::KernelFault& e_) {                                                \
      std::printf("expected fault:\n%s\n", e_.what());                                                \
      for (const std::string& piece_ : std::initializer_list<std::string>{__VA_ARGS__}) {             \
        if (std::string(e_.what()).find(piece_) == std::string::npos)                                 \
          ::fastlstm::emu::testing::fail(__FILE__, __LINE__, std::string("report lacks: ") + piece_); \
      }                                                                                               \
      break;                                                                                          \
    }                                                                                                 \
    ::fastlstm::emu::testing::fail(__FILE__, __LINE__, "no fault from: " #stmt);                      \
  } while (0)
