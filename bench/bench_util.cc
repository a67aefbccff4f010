#include "bench/bench_util.h"

#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/simd.h"
#include "cli/synth.h"

namespace feedrank::bench {
namespace {

// Size of the bundle synthesized when no --bundle is given: large enough
// that the index does not fit in L2 and the graph has several levels, small
// enough to build in a few seconds.
constexpr int64_t kSynthVideos = 50000;
constexpr int64_t kSynthUsers = 5000;
constexpr int kSynthDim = 64;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(1);
}

std::string IndexDescription(const IndexSpec& spec) {
  if (spec.type() == "hnsw") {
    return absl::StrCat("hnsw M=", spec.hnsw_m(),
                        " ef_construction=", spec.hnsw_ef_construction(),
                        " beam_width=", spec.beam_width());
  }
  if (spec.type() == "ivf") {
    return absl::StrCat("ivf nlist=", spec.ivf_nlist(), " nprobe=", spec.ivf_nprobe());
  }
  return spec.type();
}

}  // namespace

std::optional<std::string> TakeFlag(const std::string& name, int* argc, char** argv) {
  const std::string bare = "--" + name;
  const std::string prefix = bare + "=";
  std::optional<std::string> value;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) {
      value = arg.substr(prefix.size());
    } else if (arg == bare && i + 1 < *argc) {
      value = argv[++i];
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = nullptr;
  return value;
}

int TakeIntFlag(const std::string& name, int default_value, int* argc, char** argv) {
  const std::optional<std::string> text = TakeFlag(name, argc, argv);
  if (!text) return default_value;
  int value = 0;
  if (!absl::SimpleAtoi(*text, &value)) {
    Die(absl::StrCat("--", name, ": '", *text, "' is not an integer"));
  }
  return value;
}

std::unique_ptr<BenchBundle> BenchBundle::LoadOrSynthesize(const std::string& dir) {
  std::unique_ptr<BenchBundle> result(new BenchBundle());
  if (dir.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(
        tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp", "/feedrank-bench-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      Die(absl::StrCat("cannot create a temporary directory from ", pattern));
    }
    result->temp_root_ = pattern;
    result->dir_ = pattern + "/bundle";
    SynthOptions options;
    options.videos = kSynthVideos;
    options.users = kSynthUsers;
    options.dim = kSynthDim;
    options.index.set_type("hnsw");
    std::fprintf(stderr,
                 "no --bundle given: synthesizing %lld videos, %lld users, dim %d "
                 "(hnsw) into %s\n",
                 static_cast<long long>(kSynthVideos),
                 static_cast<long long>(kSynthUsers), kSynthDim, result->dir_.c_str());
    if (absl::Status s = WriteSynthBundle(options, result->dir_); !s.ok()) {
      Die(s.ToString());
    }
  } else {
    result->dir_ = dir;
  }
  auto bundle = LoadBundle(result->dir_);
  if (!bundle.ok()) Die(bundle.status().ToString());
  result->bundle_ = *std::move(bundle);
  return result;
}

BenchBundle::~BenchBundle() {
  if (temp_root_.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(temp_root_, error);
}

void AddBundleContext(const BenchBundle& b) {
  const Bundle& bundle = b.bundle();
  const BundleManifest& m = bundle.manifest;
  benchmark::AddCustomContext(
      "bundle", b.synthesized() ? absl::StrCat(b.dir(), " (synthesized)") : b.dir());
  benchmark::AddCustomContext("bundle_version", m.version());
  benchmark::AddCustomContext(
      "bundle_size",
      absl::StrCat(bundle.catalog->num_videos(), " videos, ", bundle.catalog->num_users(),
                   " users, dim ", bundle.catalog->dim()));
  benchmark::AddCustomContext("index", IndexDescription(m.index()));
  benchmark::AddCustomContext(
      "model", absl::StrCat("features ", bundle.features.width(), ", hidden [",
                            absl::StrJoin(m.model().hidden(), ","), "], heads ",
                            bundle.model->num_objectives()));
  benchmark::AddCustomContext("simd_kernel", simd::KernelName());
}

std::vector<int32_t> SpreadUserRows(const Catalog& catalog, int n) {
  const int64_t users = catalog.num_users();
  const int64_t count = std::min<int64_t>(n, users);
  std::vector<int32_t> rows(count);
  for (int64_t i = 0; i < count; ++i) {
    rows[i] = static_cast<int32_t>(i * users / count);
  }
  return rows;
}

int64_t BundleNowMs(const Catalog& catalog) {
  constexpr int64_t kHourMs = 3600 * 1000;
  const auto fresh = catalog.fresh_rows();
  return (fresh.empty() ? 0 : catalog.upload_time_ms(fresh[0])) + kHourMs;
}

double ThreadCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(p, 0.0, 1.0) * double(values.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - double(lo)) * (values[hi] - values[lo]);
}

void InitBenchmarks(int* argc, char** argv) {
  benchmark::Initialize(argc, argv);
  if (benchmark::ReportUnrecognizedArguments(*argc, argv)) std::exit(1);
}

int RunBenchmarks() {
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace feedrank::bench
