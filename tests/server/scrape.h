// Test helpers: a real HTTP GET (cpp-httplib) and a reader of the
// Prometheus text exposition it returns. Included by the server tests only
// (one translation unit each), after the project's headers.
#ifndef FEEDRANK_TESTS_SERVER_SCRAPE_H_
#define FEEDRANK_TESTS_SERVER_SCRAPE_H_

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
// After Eigen: httplib includes <resolv.h>, whose `_res` macro breaks Eigen.
#include <httplib.h>
#undef _res

namespace feedrank {
namespace testing {

// One sample of a Prometheus text exposition: name{labels} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the text format (comments, samples with optional labels); fails
// the test on a line it cannot read.
inline std::vector<Sample> ParsePrometheus(const std::string& text) {
  std::vector<Sample> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') {
      EXPECT_TRUE(absl::StartsWith(line, "# HELP ") || absl::StartsWith(line, "# TYPE "))
          << line;
      continue;
    }
    Sample s;
    size_t end = line.find_first_of("{ ");
    s.name = std::string(line.substr(0, end));
    absl::string_view rest = line.substr(end);
    if (rest[0] == '{') {
      const size_t close = rest.find('}');
      for (absl::string_view pair :
           absl::StrSplit(rest.substr(1, close - 1), ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        std::string value(pair.substr(eq + 1));
        EXPECT_TRUE(value.size() >= 2 && value.front() == '"' && value.back() == '"')
            << line;
        s.labels[std::string(pair.substr(0, eq))] = value.substr(1, value.size() - 2);
      }
      rest = rest.substr(close + 1);
    }
    rest = absl::StripLeadingAsciiWhitespace(rest);
    const std::string number(rest.substr(0, rest.find(' ')));
    if (number == "+Inf") {
      s.value = INFINITY;
    } else {
      EXPECT_TRUE(absl::SimpleAtod(number, &s.value)) << line;
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

// The value of the sample `name` whose labels include `labels`; -1 if none.
inline double Value(const std::vector<Sample>& samples, const std::string& name,
                    const std::map<std::string, std::string>& labels = {}) {
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      match &= it != s.labels.end() && it->second == v;
    }
    if (match) return s.value;
  }
  return -1;
}

inline httplib::Result Get(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  return client.Get(path);
}

}  // namespace testing
}  // namespace feedrank

#endif  // FEEDRANK_TESTS_SERVER_SCRAPE_H_
