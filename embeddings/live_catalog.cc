#include "embeddings/live_catalog.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

// Keeps a segment list's sizes falling by half or more from the oldest to
// the newest (so there are at most log2(rows) + 1 of them) after a segment
// was added at the end: merges the shortest tail that restores it. A row is
// copied again only when its segment grows by half, so a batch costs
// O(batch * log(delta)) amortised instead of a copy of the delta.
template <typename Segment>
void MergeTail(std::vector<std::shared_ptr<const Segment>>& segments,
               std::shared_ptr<const Segment> (*merge)(const Segment&, const Segment&)) {
  size_t j = segments.size() - 1;
  int64_t tail = segments[j]->size();
  while (j > 0 && segments[j - 1]->size() < 2 * tail) tail += segments[--j]->size();
  // Newest first: the accumulated part stays the smaller one of each merge.
  while (segments.size() - 1 > j) {
    auto merged = merge(*segments[segments.size() - 2], *segments.back());
    segments.pop_back();
    segments.back() = std::move(merged);
  }
}

}  // namespace

LiveCatalog::LiveCatalog(std::shared_ptr<const Catalog> base, uint64_t version)
    : base_(std::move(base)), version_(version) {
  view_.Store(CatalogView::Of(base_, version_));
}

absl::Status LiveCatalog::Validate(const UpdateBatch& batch, int64_t limit) const {
  const size_t items = batch.upserts.size() + batch.deletes.size() + batch.users.size();
  if (items == 0) return absl::InvalidArgumentError("the batch is empty");
  if (items > size_t(limit)) {
    return absl::InvalidArgumentError(absl::StrCat("the batch holds ", items,
                                                   " items, more than the limit of ",
                                                   limit, "; split it"));
  }
  absl::flat_hash_set<uint64_t> seen;
  seen.reserve(items);
  const int dim = base_->dim();
  for (size_t i = 0; i < batch.upserts.size(); ++i) {
    const VideoUpsert& v = batch.upserts[i];
    auto bad = [&](auto&&... why) {
      return absl::InvalidArgumentError(
          absl::StrCat("upserts[", i, "] id ", v.id, ": ", why...));
    };
    if (!seen.insert(v.id).second) return bad("the id appears twice in the batch");
    if (int(v.embedding.size()) != dim) {
      return bad("embedding has ", v.embedding.size(),
                 " values, the catalogue's dimension is ", dim);
    }
    double norm = 0;
    for (size_t d = 0; d < v.embedding.size(); ++d) {
      if (!std::isfinite(v.embedding[d])) {
        return bad("embedding[", d, "] is ", v.embedding[d], ", not finite");
      }
      norm += double(v.embedding[d]) * v.embedding[d];
    }
    if (norm == 0) return bad("embedding is all zeros");
    if (v.duration_ms < 0) return bad("duration_ms ", v.duration_ms, " is negative");
    if (v.upload_time_ms < 0)
      return bad("upload_time_ms ", v.upload_time_ms, " is negative");
    if (!std::isfinite(v.popularity) || v.popularity < 0) {
      return bad("popularity ", v.popularity, " is not a finite non-negative number");
    }
  }
  for (size_t i = 0; i < batch.deletes.size(); ++i) {
    if (!seen.insert(batch.deletes[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("deletes[", i, "] id ", batch.deletes[i],
                       ": the id appears twice in the batch (an upsert and a delete of "
                       "one id cannot share a batch)"));
    }
  }
  absl::flat_hash_set<uint64_t> users;
  users.reserve(batch.users.size());
  for (size_t i = 0; i < batch.users.size(); ++i) {
    const UserUpsert& u = batch.users[i];
    auto bad = [&](auto&&... why) {
      return absl::InvalidArgumentError(
          absl::StrCat("users[", i, "] id ", u.id, ": ", why...));
    };
    if (!users.insert(u.id).second) return bad("the id appears twice in the batch");
    if (int(u.embedding.size()) != dim) {
      return bad("embedding has ", u.embedding.size(),
                 " values, the catalogue's dimension is ", dim);
    }
    for (size_t d = 0; d < u.embedding.size(); ++d) {
      if (!std::isfinite(u.embedding[d])) {
        return bad("embedding[", d, "] is ", u.embedding[d], ", not finite");
      }
    }
    if (!std::isfinite(u.activity) || u.activity < 0) {
      return bad("activity ", u.activity, " is not a finite non-negative number");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CatalogView>> LiveCatalog::Apply(
    const UpdateBatch& batch, ApplyStats* stats, int64_t limit) {
  RETURN_IF_ERROR(Validate(batch, limit));
  ApplyStats local;
  ApplyStats& s = stats != nullptr ? *stats : local;
  s = ApplyStats();
  // Everything is built beside the current view; the view is replaced only
  // once the new one is complete, so a failure leaves all as it was.
  const std::shared_ptr<const CatalogView> now = view_.Load();
  const int32_t base_rows = base_->num_videos();
  auto bitmap = now->tombstones() != nullptr
                    ? std::make_shared<RowBitmap>(*now->tombstones())
                    : std::make_shared<RowBitmap>(size_t(base_rows));
  bitmap->Grow(size_t(now->num_rows()) + batch.upserts.size());
  const int dim = base_->dim();
  int32_t delta_live = delta_live_;
  VideoColumns columns;
  columns.ids.reserve(batch.upserts.size());
  columns.embeddings.reserve(batch.upserts.size() * dim);
  for (const VideoUpsert& v : batch.upserts) {
    const std::optional<int32_t> row = now->VideoRow(v.id);  // live rows only
    (row.has_value() ? s.replaced : s.inserted) += 1;
    if (row.has_value()) bitmap->Insert(*row);  // replaced by its new row
    delta_live += 1 - (row.has_value() && *row >= base_rows);
    columns.ids.push_back(v.id);
    columns.embeddings.insert(columns.embeddings.end(), v.embedding.begin(),
                              v.embedding.end());
    columns.creator_ids.push_back(v.creator_id);
    columns.duration_ms.push_back(v.duration_ms);
    columns.upload_time_ms.push_back(v.upload_time_ms);
    columns.popularity.push_back(v.popularity);
  }
  for (uint64_t id : batch.deletes) {
    const std::optional<int32_t> row = now->VideoRow(id);
    (row.has_value() ? s.deleted : s.unknown_deletes) += 1;
    if (row.has_value()) bitmap->Insert(*row);
    delta_live -= row.has_value() && *row >= base_rows;
  }
  DeltaSegments segments = now->delta_segments();
  if (!batch.upserts.empty()) {
    ASSIGN_OR_RETURN(std::shared_ptr<const CatalogDelta> added,
                     CatalogDelta::Create(*base_, std::move(columns)));
    segments.push_back(std::move(added));
    MergeTail(segments, &CatalogDelta::Merge);
  }
  UserSegments users = now->user_segments();
  int32_t delta_users = delta_users_;
  if (!batch.users.empty()) {
    auto part = std::make_shared<UserDelta>();
    part->dim = dim;
    part->rows.reserve(batch.users.size());
    part->embeddings.reserve(batch.users.size() * dim);
    for (const UserUpsert& u : batch.users) {
      const float* e;
      float activity;
      const bool in_delta = now->FindDeltaUser(u.id, &e, &activity);
      const bool known = in_delta || base_->UserRow(u.id).has_value();
      (known ? s.users_replaced : s.users_inserted) += 1;
      delta_users += !in_delta;
      part->rows.emplace(u.id, part->size());
      part->embeddings.insert(part->embeddings.end(), u.embedding.begin(),
                              u.embedding.end());
      part->activity.push_back(u.activity);
    }
    users.push_back(std::move(part));
    MergeTail(users, &UserDelta::Merge);
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const CatalogView> view,
                   CatalogView::CreateTrusted(base_, std::move(segments), bitmap,
                                              version_ + 1, std::move(users)));
  delta_live_ = delta_live;
  delta_users_ = delta_users;
  ++version_;
  view_.Store(view);
  return view;
}

int32_t LiveCatalog::delta_size() const { return delta_live_; }
int64_t LiveCatalog::tombstones() const {
  const RowBitmap* t = view_.Load()->tombstones();
  return t == nullptr ? 0 : static_cast<int64_t>(t->count());
}

}  // namespace feedrank
