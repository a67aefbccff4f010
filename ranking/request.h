// The RankFeed API messages (proto/feedrank/v1/ranker.proto) in and out of
// the Ranker: the request rules that the server and offline replay both
// apply, and the response built from a RankResult. No gRPC here.
#ifndef FEEDRANK_RANKING_REQUEST_H_
#define FEEDRANK_RANKING_REQUEST_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/env.h"
#include "feedrank/v1/ranker.pb.h"
#include "ranking/ranker.h"

namespace feedrank {

inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr int32_t kMaxUtcOffsetMinutes = 14 * 60;
// Client times beyond this (year 2200) are refused: they would overflow the
// features' arithmetic on minutes and hours long before they mean anything.
inline constexpr int64_t kMaxClientTimeMs = 7258118400000;

// Checks the fields of `proto` the ranker does not own and fills `out`:
//   request_id                  at most kMaxRequestIdBytes bytes
//   context.client_time_ms      in [0, kMaxClientTimeMs]; 0 = clock's now
//   context.utc_offset_minutes  in [-840, 840]
//   context.device              a known Device (else unspecified)
// count and the exclude list are copied as given (the ranker checks them
// against its options); `out->exclude_ids` points into `proto`, which must
// outlive `out`. The deadline is left as it is. Errors: InvalidArgument
// naming the field.
absl::Status RankRequestFromProto(const v1::RankFeedRequest& proto, const Clock& clock,
                                  RankRequest* out);

// What a response says besides the page.
struct ResponseInfo {
  const std::vector<std::string>* objectives = nullptr;
  absl::string_view bundle_version;
  absl::string_view config_version;
  uint64_t catalog_version = 0;
};

// Fills `response` (assumed empty) from a ranked page; the debug section
// when `request.debug()` is set.
void RankResultToProto(const v1::RankFeedRequest& request, const RankResult& result,
                       const ResponseInfo& info, v1::RankFeedResponse* response);

v1::Source ToProto(CandidateSource source);

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_REQUEST_H_
