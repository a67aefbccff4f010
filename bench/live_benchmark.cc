// What one live batch costs the writer (LiveCatalog::Apply: a new immutable
// view per batch, read-copy-update) as the delta grows, over a 1M x 64
// synthetic base catalogue (no index: Apply never searches). A batch adds a
// delta segment and merges the newest ones (embeddings/live_catalog.h), and
// copies the tombstone bitmap. Readers never wait on it (they keep the view
// they took).
//
// And what the delta costs a reader: BM_DeltaSearch is CatalogView::Search
// for 500 hits over a 2,000-video base (exact index) plus a delta of
// range(0) videos, i.e. the exact scan of the delta that every ANN call
// adds: what the compaction threshold bounds.
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

void BM_DeltaSearch(benchmark::State& state) {
  const int delta = static_cast<int>(state.range(0));
  SynthOptions o;
  o.videos = 2000;
  o.users = 10;
  o.dim = 64;
  auto data = Synthesize(o);
  if (!data.ok()) std::abort();
  IndexSpec spec;
  spec.set_type("flat");
  auto index =
      AnnIndex::Build(data->videos.embeddings.data(), 2000, 64, &spec, nullptr, 1);
  if (!index.ok()) std::abort();
  *data->manifest.mutable_index() = spec;
  auto base =
      Catalog::Create(data->manifest, data->videos, data->users, *std::move(index));
  if (!base.ok()) std::abort();
  std::shared_ptr<const Catalog> shared = *std::move(base);
  LiveCatalog live(shared);
  std::mt19937_64 rng(7);
  for (int done = 0; done < delta; done += 1000) {
    if (!live.Apply(Uploads(9000000000ull + done, std::min(1000, delta - done), &rng))
             .ok())
      std::abort();
  }
  const auto view = live.view();
  SearchScratch scratch;
  std::vector<Hit> hits;
  SearchOptions options;
  options.k = 500;
  int u = 0;
  for (auto _ : state) {
    view->Search(shared->user_embedding(u++ % 10), options, RowPredicate(), &scratch,
                 &hits);
    benchmark::DoNotOptimize(hits.data());
  }
  state.counters["segments"] = double(view->delta_segments().size());
}
BENCHMARK(BM_DeltaSearch)
    ->Arg(0)
    ->Arg(10000)
    ->Arg(50000)
    ->Arg(200000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace feedrank

BENCHMARK_MAIN();
