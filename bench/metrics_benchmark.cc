// What the server's metrics cost per call: ServerMetrics::RecordCall and
// RecordRanking as the RankFeed handler calls them (one of each per ranked
// call), on one thread and contended by two (the workers of this machine),
// and a scrape (Collect + text serialisation) for scale.
#include <benchmark/benchmark.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "server/metrics.h"

namespace feedrank {
namespace {

RankResult TypicalResult() {
  RankResult r;
  r.items.resize(20);
  for (int i = 0; i < int(RankStage::kNumStages); ++i)
    r.stats.stage_micros[i] = 50 + 100 * i;
  r.stats.ann_retrieved = r.stats.ann_kept = 500;
  r.stats.popular_retrieved = 60;
  r.stats.popular_kept = 50;
  r.stats.fresh_retrieved = r.stats.fresh_kept = 20;
  r.stats.scored = 570;
  r.stats.creator_capped = 3;
  return r;
}

ServerMetrics* Shared() {
  static ServerMetrics* metrics = new ServerMetrics();
  return metrics;
}

void BM_RecordOneRankedCall(benchmark::State& state) {
  ServerMetrics* metrics = Shared();
  const RankResult result = TypicalResult();
  int64_t micros = 900;
  for (auto _ : state) {
    metrics->AddInFlight(1);
    metrics->RecordRanking(result);
    metrics->RecordCall(Method::kRankFeed, 0, micros);
    metrics->AddInFlight(-1);
    micros = (micros * 7 + 13) % 5000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordOneRankedCall)->Threads(1)->Threads(2)->UseRealTime();

// A ranked call of a user in two experiment layers: the same, plus what
// the handler records per arm (code, latency, degraded, mean prediction of
// six objectives) for each of its two arms.
void BM_RecordOneRankedCallInTwoArms(benchmark::State& state) {
  ServerMetrics* metrics = Shared();
  static const int slots[2] = {metrics->ArmSlot({"ranking", "beam", "wide"}),
                               metrics->ArmSlot({"page", "cap", "one"})};
  const RankResult result = TypicalResult();
  const float means[6] = {0.3f, 0.5f, 0.9f, 0.05f, 0.04f, 0.02f};
  int64_t micros = 900;
  for (auto _ : state) {
    metrics->AddInFlight(1);
    metrics->RecordRanking(result);
    metrics->RecordCall(Method::kRankFeed, 0, micros);
    for (int slot : slots) metrics->RecordArmCall(slot, 0, micros, false, means, 6);
    metrics->AddInFlight(-1);
    micros = (micros * 7 + 13) % 5000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordOneRankedCallInTwoArms)->Threads(1)->Threads(2)->UseRealTime();

// The same work on an instance per thread: what two threads cost without
// any shared memory (the machine's own scaling, for comparison).
void BM_RecordOneRankedCallUnshared(benchmark::State& state) {
  ServerMetrics metrics;
  const RankResult result = TypicalResult();
  int64_t micros = 900;
  for (auto _ : state) {
    metrics.AddInFlight(1);
    metrics.RecordRanking(result);
    metrics.RecordCall(Method::kRankFeed, 0, micros);
    metrics.AddInFlight(-1);
    micros = (micros * 7 + 13) % 5000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordOneRankedCallUnshared)->Threads(1)->Threads(2)->UseRealTime();

void BM_Scrape(benchmark::State& state) {
  ServerMetrics* metrics = Shared();
  metrics->SetServing("bundle-1", "/srv/bundles/1", "config-1");
  for (auto _ : state) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics->Collect());
    benchmark::DoNotOptimize(out.str().size());
  }
}
BENCHMARK(BM_Scrape)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace feedrank

BENCHMARK_MAIN();
