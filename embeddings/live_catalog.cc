#include "embeddings/live_catalog.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {

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
  const CatalogDelta* previous = now->delta();
  const int32_t base_rows = base_->num_videos();
  const int32_t previous_rows = previous == nullptr ? 0 : previous->size();
  auto bitmap = now->tombstones() != nullptr
                    ? std::make_shared<RowBitmap>(*now->tombstones())
                    : std::make_shared<RowBitmap>(size_t(base_rows));
  bitmap->Grow(size_t(base_rows) + previous_rows + batch.upserts.size());
  // The live row of `id` in the current view (base or delta), if any.
  auto live_row = [&](uint64_t id) -> std::optional<int32_t> {
    if (previous != nullptr) {
      if (auto r = previous->Row(id); r.has_value() && now->live(base_rows + *r))
        return base_rows + *r;
    }
    if (auto r = base_->VideoRow(id); r.has_value() && now->live(*r)) return *r;
    return std::nullopt;
  };
  const int dim = base_->dim();
  int32_t delta_live = delta_live_;
  VideoColumns columns;
  columns.ids.reserve(batch.upserts.size());
  columns.embeddings.reserve(batch.upserts.size() * dim);
  for (const VideoUpsert& v : batch.upserts) {
    const std::optional<int32_t> row = live_row(v.id);
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
    const std::optional<int32_t> row = live_row(id);
    (row.has_value() ? s.deleted : s.unknown_deletes) += 1;
    if (row.has_value()) bitmap->Insert(*row);
    delta_live -= row.has_value() && *row >= base_rows;
  }
  std::shared_ptr<const CatalogDelta> delta_part = now->shared_delta();
  if (!batch.upserts.empty()) {
    ASSIGN_OR_RETURN(delta_part,
                     CatalogDelta::Append(*base_, previous, std::move(columns)));
  }
  if (delta_part != nullptr) bitmap->Grow(size_t(base_rows) + delta_part->size());
  const bool users_changed = !batch.users.empty();
  std::map<uint64_t, UserUpsert> users;
  if (users_changed) users = users_;
  for (const UserUpsert& u : batch.users) {
    const bool known = users.count(u.id) > 0 || base_->UserRow(u.id).has_value();
    (known ? s.users_replaced : s.users_inserted) += 1;
    users[u.id] = u;
  }
  // The user delta is rebuilt only when the batch changes it.
  std::shared_ptr<const UserDelta> user_part;
  if (!users_changed) {
    user_part = now->shared_user_delta();
  } else if (!users.empty()) {
    auto part = std::make_shared<UserDelta>();
    part->dim = dim;
    part->rows.reserve(users.size());
    part->embeddings.reserve(users.size() * dim);
    for (const auto& [id, u] : users) {
      part->rows.emplace(id, part->size());
      part->embeddings.insert(part->embeddings.end(), u.embedding.begin(),
                              u.embedding.end());
      part->activity.push_back(u.activity);
    }
    user_part = std::move(part);
  }
  ASSIGN_OR_RETURN(
      std::shared_ptr<const CatalogView> view,
      CatalogView::CreateTrusted(base_, delta_part, bitmap, version_ + 1, user_part));
  if (users_changed) users_ = std::move(users);
  delta_live_ = delta_live;
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
