// Replay logs and the request log's records (replay/replay_log.h): the
// binary framing (length-prefixed ReplayRecords) and JSON lines, each
// record's checks (ValidateReplayRecord), under both bad-record policies.
// The server's request log writes this format, so its records are read by
// this reader too.
//
// Input: one byte choosing the format (even: binary, odd: JSON lines), then
// the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz/fuzz_util.h"
#include "replay/replay_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string path =
      feedrank::fuzz::WriteInput(data[0] % 2 == 0 ? "input.replay" : "input.jsonl",
                                 feedrank::fuzz::AsView(data + 1, size - 1));
  feedrank::ReplayLogReadStats fail_stats;
  auto strict =
      feedrank::ReadReplayLog(path, feedrank::BadRecordPolicy::kFail, &fail_stats);
  feedrank::ReplayLogReadStats skip_stats;
  auto lenient =
      feedrank::ReadReplayLog(path, feedrank::BadRecordPolicy::kSkip, &skip_stats);
  // Every record returned passes the record checks; a log the strict read
  // accepts, the lenient read returns whole and skips nothing.
  if (lenient.ok()) {
    for (const feedrank::v1::ReplayRecord& r : *lenient) {
      if (!feedrank::ValidateReplayRecord(r).ok()) std::abort();
    }
  }
  if (strict.ok()) {
    if (!lenient.ok() || lenient->size() != strict->size() || skip_stats.skipped != 0)
      std::abort();
  }
  return 0;
}
