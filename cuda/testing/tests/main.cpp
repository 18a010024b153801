// The execution model's test runner: every registered case in a forked child, judged by its exit status and
// output (harness.h). Usage: emu_tests [--list] [--verbose] [substring...]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <string>

#include "harness.h"

namespace {

using fastlstm::emu::testing::Case;
using fastlstm::emu::testing::Expect;

struct Outcome {
  int status = 0;
  std::string output;
};

Outcome run_in_child(const Case& c) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    c.fn();
    std::fflush(nullptr);
    std::_Exit(0);  // no atexit handlers of the runner; ThreadSanitizer still reports on exit
  }
  close(fds[1]);
  Outcome o;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) o.output.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  waitpid(pid, &o.status, 0);
  return o;
}

// Empty when the outcome meets the case's expectation, else why not.
std::string judge(const Case& c, const Outcome& o) {
  const bool exited0 = WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0;
  const bool tsan_report = o.output.find("ThreadSanitizer") != std::string::npos;
  if (c.expect == Expect::pass) {
    if (tsan_report) return "a ThreadSanitizer report";
    if (!exited0) return "exit status " + std::to_string(o.status);
    return "";
  }
  if (c.expect == Expect::abort) {
    if (!WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGABRT) return "did not abort";
    if (o.output.find(c.symbol) == std::string::npos) return std::string("the output lacks: ") + c.symbol;
    return "";
  }
  if (fastlstm::emu::detail::kTsan) {  // the race checker must name the data race and the kernel
    if (o.output.find("ThreadSanitizer: data race") == std::string::npos) return "no ThreadSanitizer data race report";
    if (o.output.find(c.symbol) == std::string::npos) return std::string("the race report does not name ") + c.symbol;
    return "";
  }
  if (o.output.find("CAUGHT:") == std::string::npos) return "no schedule showed the planted bug";
  if (!exited0) return "exit status " + std::to_string(o.status);
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  bool list = false, verbose = false;
  std::vector<std::string> filters;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--list") == 0) {
      list = true;
    } else if (std::strcmp(argv[i], "--verbose") == 0) {
      verbose = true;
    } else {
      filters.emplace_back(argv[i]);
    }
  }
  int failed = 0, ran = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const Case& c : fastlstm::emu::testing::registry()) {
    bool selected = filters.empty();
    for (const auto& f : filters) selected = selected || std::string(c.name).find(f) != std::string::npos;
    if (!selected) continue;
    if (list) {
      std::printf("%s\n", c.name);
      continue;
    }
    const auto t = std::chrono::steady_clock::now();
    const Outcome o = run_in_child(c);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    const std::string why = judge(c, o);
    ++ran;
    const char* kind = c.expect == Expect::race    ? " (planted race: caught)"
                       : c.expect == Expect::abort ? " (aborted, as expected)"
                                                   : "";
    if (why.empty()) {
      std::printf("ok    %-44s %6.2f s%s\n", c.name, s, kind);
      if (verbose) std::printf("%s", o.output.c_str());
    } else {
      ++failed;
      std::printf("FAIL  %-44s %6.2f s: %s\n%s\n", c.name, s, why.c_str(), o.output.c_str());
    }
  }
  if (!list) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d of %d cases passed in %.1f s (%s build)\n", ran - failed, ran, s,
                fastlstm::emu::detail::kTsan   ? "ThreadSanitizer"
                : fastlstm::emu::detail::kAsan ? "AddressSanitizer"
                                               : "plain");
  }
  return failed == 0 && (ran > 0 || list) ? 0 : 1;
}
