// What the request log (replay/request_log.h) costs a RankFeed call: the
// work the handler does for it, and nothing else (the writer thread runs,
// writing to a real file in $TMPDIR, but on its own thread).
//
//   not sampled: RequestLog::Sample() at rate 0.01 (99% of calls: all
//                they pay)
//   sampled:     Sample() at rate 1, then the entry as the handler makes it
//                (the request's bytes out of a grpc::ByteBuffer, 20 page ids,
//                the versions, the receive time) and Submit()
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_buffer_writer.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "feedrank/v1/ranker.pb.h"
#include "replay/request_log.h"

namespace feedrank {
namespace {

std::unique_ptr<RequestLog> OpenLog(double rate, const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  RequestLogOptions o;
  o.path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/request_log_benchmark-",
                        ::getpid(), "-", name);
  o.sample_rate = rate;
  o.max_bytes = 0;
  o.keep = 0;
  // Large enough that nothing is dropped in the iterations run (a drop is
  // cheaper than a queued entry; this measures the queued one).
  o.max_queued = 1 << 24;
  o.max_queued_bytes = uint64_t{1} << 32;
  auto log = RequestLog::Open(o, *FileSystem::Real());
  if (!log.ok()) std::abort();
  // The writer keeps writing to the open file (no rotation); nothing is
  // left behind in $TMPDIR.
  ::unlink(o.path.c_str());
  return *std::move(log);
}

grpc::ByteBuffer TypicalRequest() {
  v1::RankFeedRequest r;
  r.set_user_id(123456789);
  r.set_count(20);
  for (int i = 0; i < 50; ++i) r.add_exclude_ids(1000000 + 7919 * i);
  r.mutable_context()->set_client_time_ms(1793491200000);
  r.mutable_context()->set_utc_offset_minutes(60);
  r.set_request_id("3f2a9c1e-5b7d-4e8f-a1c2-0d9e8f7a6b5c");
  grpc::ByteBuffer buffer;
  bool own;
  if (!grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::RankFeedRequest>(r, &buffer,
                                                                            &own)
           .ok())
    std::abort();
  return buffer;
}

void BM_NotSampled(benchmark::State& state) {
  static RequestLog* log = OpenLog(0.01, "not-sampled").release();
  int64_t sampled = 0;
  for (auto _ : state) sampled += log->Sample();
  benchmark::DoNotOptimize(sampled);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NotSampled)->Threads(1)->Threads(2)->UseRealTime();

void BM_Sampled(benchmark::State& state) {
  static RequestLog* log = OpenLog(1, "sampled").release();
  const grpc::ByteBuffer request = TypicalRequest();
  std::vector<uint64_t> page(20);
  for (int i = 0; i < 20; ++i) page[i] = 5000000 + 31 * i;
  const std::string bundle = "bundle-2026-12-01", config = "config-7";
  Clock* clock = Clock::Real();
  const SteadyTime arrived = clock->Now();
  for (auto _ : state) {
    if (!log->Sample()) continue;
    RequestLogEntry entry;
    std::vector<grpc::Slice> slices;
    if (request.Dump(&slices).ok()) {
      entry.request.reserve(request.Length());
      for (const grpc::Slice& slice : slices) {
        entry.request.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
    entry.time_ms = clock->UnixMillis() - MicrosBetween(arrived, clock->Now()) / 1000;
    entry.bundle_version = bundle;
    entry.config_version = config;
    entry.catalog_version = 1;
    entry.video_ids.assign(page.begin(), page.end());
    entry.latency_us = 900;
    log->Submit(std::move(entry));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const RequestLogCounts c = log->counts();
    state.counters["dropped"] = double(c.dropped);
  }
}
BENCHMARK(BM_Sampled)->Threads(1)->Threads(2)->UseRealTime()->Iterations(200000);

}  // namespace
}  // namespace feedrank

BENCHMARK_MAIN();
