// What one live batch costs the writer (LiveCatalog::Apply: a new immutable
// view per batch, read-copy-update) as the delta grows, over a 1M x 64
// synthetic base catalogue (no index: Apply never searches). The delta's
// columns and lists are rebuilt per batch, so the cost grows with the
// delta: what the compaction threshold bounds. Readers never wait on it
// (they keep the view they took).
//
//   build/bench/live_benchmark [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <memory>
#include <random>

#include "cli/synth.h"
#include "embeddings/live_catalog.h"

namespace feedrank {
namespace {

std::shared_ptr<const Catalog> Base() {
  static std::shared_ptr<const Catalog>* base = [] {
    SynthOptions o;
    o.videos = 1000000;
    o.users = 1000;
    o.dim = 64;
    auto data = Synthesize(o);
    if (!data.ok()) std::abort();
    auto catalog = Catalog::Create(data->manifest, std::move(data->videos),
                                   std::move(data->users), nullptr);
    if (!catalog.ok()) std::abort();
    return new std::shared_ptr<const Catalog>(std::move(*catalog));
  }();
  return *base;
}

UpdateBatch Uploads(uint64_t first_id, int n, std::mt19937_64* rng) {
  std::normal_distribution<float> normal;
  UpdateBatch batch;
  for (int i = 0; i < n; ++i) {
    VideoUpsert v;
    v.id = first_id + i;
    v.embedding.resize(64);
    for (float& x : v.embedding) x = normal(*rng);
    v.creator_id = (*rng)() % 1000;
    v.duration_ms = 15000;
    v.upload_time_ms = 1793491200000;
    v.popularity = float((*rng)() % 1000);
    batch.upserts.push_back(std::move(v));
  }
  return batch;
}

// range(0): videos already in the delta; range(1): videos per batch.
void BM_LiveApply(benchmark::State& state) {
  const int delta = static_cast<int>(state.range(0));
  const int batch_size = static_cast<int>(state.range(1));
  std::mt19937_64 rng(7);
  std::vector<UpdateBatch> fill;
  for (int done = 0; done < delta; done += LiveCatalog::kMaxBatch) {
    fill.push_back(Uploads(9000000000ull + done,
                           std::min(LiveCatalog::kMaxBatch, delta - done), &rng));
  }
  std::unique_ptr<LiveCatalog> live;
  auto refill = [&] {
    live = std::make_unique<LiveCatalog>(Base());
    for (const UpdateBatch& b : fill) {
      if (!live->Apply(b).ok()) std::abort();
    }
  };
  refill();
  // The same ids each time: replaced, so the live delta stays at its size;
  // the replaced rows stay until compaction, so the catalogue is rebuilt
  // (untimed) before they exceed 2,000.
  const UpdateBatch batch = Uploads(8000000000ull, batch_size, &rng);
  for (auto _ : state) {
    if (live->view()->num_rows() - Base()->num_videos() > delta + 2000) {
      state.PauseTiming();
      refill();
      state.ResumeTiming();
    }
    auto view = live->Apply(batch);
    if (!view.ok()) state.SkipWithError("apply failed");
    benchmark::DoNotOptimize(view);
  }
  state.counters["delta"] = live->delta_size();
  state.SetItemsProcessed(state.iterations() * batch_size);
}
BENCHMARK(BM_LiveApply)
    ->ArgsProduct({{0, 1000, 10000, 50000, 200000}, {1, 100}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace feedrank

BENCHMARK_MAIN();
