// Appends per second to the write-ahead log at each sync policy, on real
// files in $TMPDIR (or /tmp): a record of 300 bytes, about one video upsert
// (a 64-float embedding and its metadata). kAlways pays one fsync per
// record; the figure depends on the disk far more than on this code.
//
//   build/bench/wal_benchmark [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "base/env.h"
#include "base/wal.h"

namespace feedrank {
namespace {

void BM_WalAppend(benchmark::State& state) {
  const WalSync sync = static_cast<WalSync>(state.range(0));
  const char* tmp = getenv("TMPDIR");
  std::string dir =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/feedrank-wal-bench-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  WalOptions options;
  options.dir = dir + "/wal";
  options.sync = sync;
  auto log = WriteAheadLog::Open(
      options, FileSystem::Real(),
      [](uint64_t, absl::string_view) { return absl::OkStatus(); }, nullptr);
  if (!log.ok()) {
    state.SkipWithError(std::string(log.status().message()).c_str());
    return;
  }
  const std::string record(300, 'u');
  for (auto _ : state) {
    auto seq = (*log)->Append(record);
    if (!seq.ok()) {
      state.SkipWithError(std::string(seq.status().message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(WalSyncName(sync));
  log->reset();
  FileSystem::Real()->RemoveAll(dir).IgnoreError();
}
BENCHMARK(BM_WalAppend)
    ->Arg(static_cast<int>(WalSync::kAlways))
    ->Arg(static_cast<int>(WalSync::kInterval))
    ->Arg(static_cast<int>(WalSync::kNever))
    ->UseRealTime();

}  // namespace
}  // namespace feedrank

BENCHMARK_MAIN();
