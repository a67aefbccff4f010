// Helpers shared by the micro-benchmark binaries: the --bundle flag, loading
// (or synthesizing) the bundle every benchmark runs against, the context
// lines that identify a run, and small measurement utilities.
#ifndef FEEDRANK_BENCH_BENCH_UTIL_H_
#define FEEDRANK_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ranking/bundle.h"

namespace feedrank::bench {

// Removes `--name=value` or `--name value` from argv (updating *argc) and
// returns the value; nullopt when the flag is absent. Must run before
// benchmark::Initialize, which rejects flags it does not know.
std::optional<std::string> TakeFlag(const std::string& name, int* argc, char** argv);

// Like TakeFlag, for an integer flag; exits with a message when the value is
// not an integer.
int TakeIntFlag(const std::string& name, int default_value, int* argc, char** argv);

// The bundle a benchmark binary runs against. When no directory is given, a
// small synthetic bundle is written to a temporary directory, which is
// removed when this object dies, so the binaries run without arguments.
class BenchBundle {
 public:
  // Loads the bundle in `dir`, or synthesizes one when `dir` is empty.
  // Exits with a message on failure: a benchmark without its bundle has
  // nothing to measure.
  static std::unique_ptr<BenchBundle> LoadOrSynthesize(const std::string& dir);

  ~BenchBundle();
  BenchBundle(const BenchBundle&) = delete;
  BenchBundle& operator=(const BenchBundle&) = delete;

  const Bundle& bundle() const { return *bundle_; }
  const std::shared_ptr<const Bundle>& shared() const { return bundle_; }
  // The bundle directory (inside the temporary directory when synthesized).
  const std::string& dir() const { return dir_; }
  bool synthesized() const { return !temp_root_.empty(); }

 private:
  BenchBundle() = default;

  std::shared_ptr<const Bundle> bundle_;
  std::string dir_;
  std::string temp_root_;  // empty unless synthesized
};

// Adds the facts a reader needs to compare runs to the benchmark context
// (printed before the table and stored in the JSON output): bundle
// directory, version, size, index type and parameters, model shape and the
// SIMD kernel in use.
void AddBundleContext(const BenchBundle& bundle);

// Up to `n` user rows spread evenly over all users, so a query set covers
// the whole population rather than the first users written.
std::vector<int32_t> SpreadUserRows(const Catalog& catalog, int n);

// A plausible request time for the bundle: one hour after its newest upload,
// so age features look like those of a live feed.
int64_t BundleNowMs(const Catalog& catalog);

// CPU time consumed by the calling thread, in nanoseconds. Used for per-item
// counters so they agree with Google Benchmark's CPU-time column.
double ThreadCpuNanos();

// The p-quantile (p in [0, 1]) of `values`, linearly interpolated; 0 when
// empty. Takes a copy because it reorders.
double Percentile(std::vector<double> values, double p);

// Initializes Google Benchmark with the remaining arguments; exits on a flag
// it does not know (after printing its own help for --help).
void InitBenchmarks(int* argc, char** argv);

// Runs the registered benchmarks and shuts Google Benchmark down. Returns the
// process exit code.
int RunBenchmarks();

}  // namespace feedrank::bench

#endif  // FEEDRANK_BENCH_BENCH_UTIL_H_
