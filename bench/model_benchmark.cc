// Scoring micro-benchmarks: the Eigen model's forward pass over batches of
// real feature rows, and the feature computation itself, single-threaded.
//
//   model_benchmark [--bundle=DIR] [benchmark flags]
//
// The rows are those the ranker would build: one known user and the ANN
// candidates the bundle's index returns for it. Counters: ns_per_candidate
// (thread CPU time per row, like the CPU column) and, for the model, flops
// (2 x multiply-adds per second). Each benchmark runs for the default
// minimum time (0.5 s, --benchmark_min_time).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "embeddings/ann_index.h"
#include "ranking/features.h"
#include "ranking/model.h"

namespace feedrank::bench {
namespace {

constexpr int kBatchSizes[] = {1, 64, 256, 570, 1024};
// The ranker's default batch: 500 ANN + 50 popular + 20 fresh candidates.
constexpr int kFeatureRows = 570;

// One user, its ANN candidates, and their feature rows.
struct ModelFixture {
  explicit ModelFixture(const Bundle& b) : bundle(b) {
    const Catalog& catalog = *bundle.catalog;
    const int max_rows = std::max(
        *std::max_element(std::begin(kBatchSizes), std::end(kBatchSizes)), kFeatureRows);
    if (catalog.num_users() > 0) {
      const int32_t row = SpreadUserRows(catalog, 1)[0];
      user.embedding = catalog.user_embedding(row);
      user.known = true;
      user.activity = catalog.user_activity(row);
    } else {
      user.embedding = catalog.mean_user_embedding();
    }
    context.now_ms = BundleNowMs(catalog);
    context.utc_offset_minutes = 60;
    context.device = DeviceType::kAndroid;
    SearchOptions options;
    options.k = max_rows;
    SearchScratch scratch;
    std::vector<Hit> hits;
    catalog.index().Search(user.embedding, options, RowPredicate(), &scratch, &hits);
    // A catalogue smaller than the largest batch repeats its candidates.
    for (int i = 0; i < max_rows && !hits.empty(); ++i) {
      rows.push_back(hits[i % hits.size()].row);
    }
    features.resize(rows.size() * bundle.features.width());
    bundle.features.Build(catalog, user, context, rows, features.data());
  }

  const Bundle& bundle;
  UserQuery user;
  FeatureContext context;
  std::vector<int32_t> rows;
  std::vector<float> features;  // rows.size() x width, row-major
};

void SetPerCandidate(benchmark::State& state, double cpu_ns, int rows) {
  const double items = double(state.iterations()) * rows;
  state.counters["ns_per_candidate"] = items > 0 ? cpu_ns / items : 0;
  state.SetItemsProcessed(static_cast<int64_t>(items));
}

void BM_Predict(benchmark::State& state, const ModelFixture* fx, int batch,
                Precision precision) {
  const ScoringModel& model = *fx->bundle.model;
  std::vector<float> out(size_t(batch) * model.num_objectives());
  ModelScratch scratch;
  // Warm the scratch buffers so the timed loop allocates nothing, as in a
  // warm serving thread.
  model.Predict(fx->features.data(), batch, out.data(), &scratch, precision);
  if (precision == Precision::kBf16) {
    // How far bf16 predictions are from float ones, over this batch.
    std::vector<float> exact(out.size());
    model.Predict(fx->features.data(), batch, exact.data(), &scratch);
    double max_diff = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      max_diff = std::max(max_diff, double(std::abs(out[i] - exact[i])));
    }
    state.counters["max_abs_diff"] = max_diff;
  }
  const double start = ThreadCpuNanos();
  for (auto _ : state) {
    model.Predict(fx->features.data(), batch, out.data(), &scratch, precision);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  SetPerCandidate(state, ThreadCpuNanos() - start, batch);
  state.counters["flops"] =
      benchmark::Counter(2.0 * double(model.flops_per_row()) * batch,
                         benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Features(benchmark::State& state, const ModelFixture* fx, int n) {
  const FeatureSet& features = fx->bundle.features;
  const absl::Span<const int32_t> rows(fx->rows.data(), n);
  std::vector<float> out(size_t(n) * features.width());
  const double start = ThreadCpuNanos();
  for (auto _ : state) {
    features.Build(*fx->bundle.catalog, fx->user, fx->context, rows, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  SetPerCandidate(state, ThreadCpuNanos() - start, n);
}

void RegisterAll(const ModelFixture* fx) {
  const int available = static_cast<int>(fx->rows.size());
  for (int batch : kBatchSizes) {
    if (batch > available) continue;
    benchmark::RegisterBenchmark(absl::StrCat("BM_Predict/batch:", batch).c_str(),
                                 BM_Predict, fx, batch, Precision::kFloat)
        ->Unit(benchmark::kMicrosecond);
    if (bf16::Supported()) {
      benchmark::RegisterBenchmark(absl::StrCat("BM_Predict/bf16/batch:", batch).c_str(),
                                   BM_Predict, fx, batch, Precision::kBf16)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  if (kFeatureRows <= available) {
    benchmark::RegisterBenchmark(absl::StrCat("BM_Features/rows:", kFeatureRows).c_str(),
                                 BM_Features, fx, kFeatureRows)
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace feedrank::bench

int main(int argc, char** argv) {
  namespace fb = feedrank::bench;
  const std::string dir = fb::TakeFlag("bundle", &argc, argv).value_or("");
  fb::InitBenchmarks(&argc, argv);

  auto bundle = fb::BenchBundle::LoadOrSynthesize(dir);
  fb::AddBundleContext(*bundle);
  const fb::ModelFixture fixture(bundle->bundle());
  benchmark::AddCustomContext(
      "model_flops_per_candidate",
      absl::StrCat(2 * bundle->bundle().model->flops_per_row(), " (2 x multiply-adds)"));
  fb::RegisterAll(&fixture);
  return fb::RunBenchmarks();
}
