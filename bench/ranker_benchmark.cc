// End-to-end ranking micro-benchmarks: Ranker::Rank in-process (no gRPC),
// one request at a time, with the default ranking options and the costs
// Ranker::Calibrate measures on this machine, count = 20.
//
//   ranker_benchmark [--bundle=DIR] [--config=FILE] [benchmark flags]
//
// --config: a ranking config (textproto, as for `feedrank serve`); default:
// every option at its default.
//
// Variants: known users (cycling through users spread over the bundle),
// cold-start users (ids not in the bundle: the mean-user query), and known
// users with exclude lists of several sizes, below and above the options'
// exclude_pushdown_threshold (post-filter vs filter pushed into the ANN
// search; the pushed_down counter says which path ran).
//
// Each variant runs 5 repetitions of at least 0.5 s (Google Benchmark's
// default minimum time) and reports aggregates only. Besides the mean time
// per request, the counters p50_us and p99_us are percentiles of the
// individual request latencies within a repetition (what a latency SLO is
// about); the _p50/_p99 aggregate rows are statistics over the 5
// repetitions (_p50 equals _median).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "ranking/options.h"
#include "ranking/ranker.h"

namespace feedrank::bench {
namespace {

constexpr int kCount = 20;
constexpr int kKnownUsers = 1000;
constexpr int kColdUsers = 1000;
// Users with precomputed exclude lists (each list up to kExcludeSizes.back()
// ids, so memory stays small on a large bundle).
constexpr int kExcludeUsers = 200;
// 50 is below the default exclude_pushdown_threshold (64): post-filter. 100
// and 1000 are above it: pushed into the ANN search.
constexpr int kExcludeSizes[] = {50, 100, 1000};
constexpr int kRepetitions = 5;

// Requests of one variant: a user per request (cycled) and, optionally, an
// exclude list per user.
struct Workload {
  std::vector<uint64_t> users;
  std::vector<std::vector<uint64_t>> excludes;  // empty, or one per user
};

// Exclude lists as a client would send them: half are videos the user has
// already been shown, i.e. the user's own best ANN candidates (every other
// one of its top hits, so the filter really removes candidates), half are
// videos seen through other surfaces, uniformly random.
std::vector<std::vector<uint64_t>> MakeExcludes(const Catalog& catalog,
                                                const std::vector<int32_t>& user_rows,
                                                int size, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> any_video(0, catalog.num_videos() - 1);
  SearchOptions options;
  options.k = size;
  SearchScratch scratch;
  std::vector<Hit> hits;
  std::vector<std::vector<uint64_t>> lists;
  for (int32_t user_row : user_rows) {
    catalog.index().Search(catalog.user_embedding(user_row), options, RowPredicate(),
                           &scratch, &hits);
    std::vector<uint64_t>& ids = lists.emplace_back();
    for (size_t i = 0; i < hits.size() && int(ids.size()) < size / 2; i += 2) {
      ids.push_back(catalog.video_id(hits[i].row));
    }
    while (int(ids.size()) < size) ids.push_back(catalog.video_id(any_video(rng)));
  }
  return lists;
}

void BM_Rank(benchmark::State& state, const Ranker* ranker, const Workload* work) {
  const size_t n = work->users.size();
  RankRequest request;
  request.count = kCount;
  request.context.now_ms = BundleNowMs(*ranker->bundle().catalog);
  request.context.device = DeviceType::kAndroid;
  RankResult result;

  // One request outside the timed loop, to report which path ran.
  request.user_id = work->users[0];
  if (!work->excludes.empty()) request.exclude_ids = work->excludes[0];
  if (absl::Status s = ranker->Rank(request, &result); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  state.counters["pushed_down"] = result.stats.exclude_pushed_down ? 1 : 0;
  state.counters["scored"] = result.stats.scored;

  std::vector<double> latencies_us;
  latencies_us.reserve(state.max_iterations);
  size_t i = 0;
  size_t items = 0;
  for (auto _ : state) {
    request.user_id = work->users[i];
    if (!work->excludes.empty()) request.exclude_ids = work->excludes[i];
    const auto start = std::chrono::steady_clock::now();
    const absl::Status status = ranker->Rank(request, &result);
    latencies_us.push_back(std::chrono::duration<double, std::micro>(
                               std::chrono::steady_clock::now() - start)
                               .count());
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    items += result.items.size();
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["p50_us"] = Percentile(latencies_us, 0.50);
  state.counters["p99_us"] = Percentile(latencies_us, 0.99);
  state.counters["items"] =
      state.iterations() > 0 ? double(items) / double(state.iterations()) : 0;
}

double P50(const std::vector<double>& v) { return Percentile(v, 0.50); }
double P99(const std::vector<double>& v) { return Percentile(v, 0.99); }

}  // namespace
}  // namespace feedrank::bench

int main(int argc, char** argv) {
  namespace fb = feedrank::bench;
  using feedrank::Catalog;
  const std::string dir = fb::TakeFlag("bundle", &argc, argv).value_or("");
  const std::string config_path = fb::TakeFlag("config", &argc, argv).value_or("");
  fb::InitBenchmarks(&argc, argv);
  feedrank::RankingConfig config;
  if (!config_path.empty()) {
    auto parsed = feedrank::ReadConfigFile(config_path);
    if (!parsed.ok()) {
      std::fprintf(stderr, "error: %s\n", parsed.status().ToString().c_str());
      return 1;
    }
    config = *std::move(parsed);
  }

  auto bundle = fb::BenchBundle::LoadOrSynthesize(dir);
  fb::AddBundleContext(*bundle);
  auto options = feedrank::ResolveOptions(config, bundle->bundle().model->objectives());
  if (!options.ok()) {
    std::fprintf(stderr, "error: %s\n", options.status().ToString().c_str());
    return 1;
  }
  const feedrank::RankerCosts costs =
      feedrank::Ranker::Calibrate(bundle->shared(), *options);
  auto created = feedrank::Ranker::Create(bundle->shared(),
                                          feedrank::RankerOptions{*options, costs});
  if (!created.ok()) {
    std::fprintf(stderr, "error: %s\n", created.status().ToString().c_str());
    return 1;
  }
  const feedrank::Ranker& ranker = **created;
  benchmark::AddCustomContext(
      "ranker_options",
      absl::StrCat(config_path.empty() ? "defaults" : config_path, ": count ", fb::kCount,
                   ", ann_candidates ", options->ann_candidates, ", popular ",
                   options->popular_candidates, ", fresh ", options->fresh_candidates,
                   ", creator_cap ", options->creator_cap,
                   ", exclude_pushdown_threshold ", options->exclude_pushdown_threshold));
  benchmark::AddCustomContext(
      "calibrated_costs", absl::StrFormat("ann %.0f us, scoring %.0f ns/row (medians x2)",
                                          costs.ann_micros, costs.score_ns_per_row));

  const Catalog& catalog = *bundle->bundle().catalog;
  fb::Workload known, cold;
  for (int32_t row : fb::SpreadUserRows(catalog, fb::kKnownUsers)) {
    known.users.push_back(catalog.user_id(row));
  }
  // Ids the bundle does not know, found by probing upwards from a fixed base.
  for (uint64_t id = 0xC01D000000000000ull; int(cold.users.size()) < fb::kColdUsers;
       ++id) {
    if (!catalog.UserRow(id)) cold.users.push_back(id);
  }
  std::vector<fb::Workload> excluded;
  const std::vector<int32_t> exclude_rows =
      fb::SpreadUserRows(catalog, fb::kExcludeUsers);
  for (int size : fb::kExcludeSizes) {
    fb::Workload& w = excluded.emplace_back();
    for (int32_t row : exclude_rows) w.users.push_back(catalog.user_id(row));
    w.excludes = fb::MakeExcludes(catalog, exclude_rows, size, /*seed=*/size);
  }

  auto add = [&](const std::string& name, const fb::Workload* work) {
    if (work->users.empty()) return;
    benchmark::RegisterBenchmark(name.c_str(), fb::BM_Rank, &ranker, work)
        ->Repetitions(fb::kRepetitions)
        ->ReportAggregatesOnly(true)
        ->ComputeStatistics("p50", fb::P50)
        ->ComputeStatistics("p99", fb::P99)
        ->Unit(benchmark::kMicrosecond);
  };
  add("BM_Rank/known", &known);
  add("BM_Rank/cold_start", &cold);
  for (size_t i = 0; i < excluded.size(); ++i) {
    add(absl::StrCat("BM_Rank/known/exclude:", fb::kExcludeSizes[i]), &excluded[i]);
  }
  return fb::RunBenchmarks();
}
