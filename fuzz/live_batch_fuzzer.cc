// Admin update batches (server/live_updates.h, embeddings/live_catalog.h):
// a LiveUpdateRecord with arbitrary videos, deletes, users and engagement
// events, checked whole and applied as FeedAdmin's UpsertVideos/
// DeleteVideos/UpsertUsers/RecordEvents apply it (logged first), then the view it
// published searched and read. A batch refused must change nothing: the view stays the
// one served before.
//
// Input: a serialised feedrank.v1.LiveUpdateRecord (corpus/live_batch). The
// catalogue is rebuilt from the bundle every 256 accepted batches so the
// delta stays small.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "base/env.h"
#include "fuzz/fuzz_util.h"
#include "server/live_updates.h"

namespace {

struct State {
  std::unique_ptr<feedrank::LiveUpdates> live;
  std::shared_ptr<const feedrank::CatalogView> served;
  int accepted = 0;
};

State& Fresh() {
  static State state;
  if (state.live != nullptr && state.accepted < 256) return state;
  state.live.reset();
  state.served.reset();
  state.accepted = 0;
  const std::string dir = feedrank::fuzz::ScratchDir() + "/live-wal";
  feedrank::fuzz::ResetDir(dir);
  feedrank::LiveOptions options;
  options.wal_dir = dir;
  options.sync = feedrank::WalSync::kNever;
  options.compact_threshold = 0;
  auto live = feedrank::LiveUpdates::Open(options, feedrank::Env::Default(),
                                          feedrank::FileSystem::Real());
  if (!live.ok()) std::abort();
  state.live = *std::move(live);
  absl::Status published =
      state.live->Publish(feedrank::fuzz::SmallBundle(), *feedrank::FileSystem::Real(),
                          [&](std::shared_ptr<const feedrank::CatalogView> view) {
                            state.served = std::move(view);
                          });
  if (!published.ok() || state.served == nullptr) std::abort();
  return state;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  feedrank::v1::LiveUpdateRecord record;
  if (!record.ParseFromArray(data, static_cast<int>(size))) return 0;
  State& state = Fresh();
  const std::shared_ptr<const feedrank::CatalogView> before = state.served;
  auto result =
      state.live->Apply(record, [&](std::shared_ptr<const feedrank::CatalogView> view) {
        state.served = std::move(view);
      });
  if (!result.ok()) {
    if (state.served != before) std::abort();  // a refused batch changed the view
    return 0;
  }
  ++state.accepted;
  const feedrank::CatalogView& view = *state.served;
  // Every deleted id is gone from the view.
  for (uint64_t id : record.deletes()) {
    if (view.VideoRow(id).has_value()) std::abort();
  }
  // Every upserted id is live, at a row that names it.
  for (const feedrank::v1::VideoUpdate& v : record.videos()) {
    std::optional<int32_t> row = view.VideoRow(v.id());
    if (!row.has_value() || !view.live(*row) || view.video_id(*row) != v.id())
      std::abort();
  }
  return 0;
}
