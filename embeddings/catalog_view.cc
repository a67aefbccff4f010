#include "embeddings/catalog_view.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/simd.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

absl::Status BadVideo(uint64_t id, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("video ", id, ": ", what));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CatalogDelta>> CatalogDelta::Create(
    const Catalog& base, VideoColumns videos) {
  const size_t n = videos.ids.size();
  const int dim = base.dim();
  if (videos.embeddings.size() != n * dim || videos.creator_ids.size() != n ||
      videos.duration_ms.size() != n || videos.upload_time_ms.size() != n ||
      videos.popularity.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "delta columns do not match: ", n, " ids, ", videos.embeddings.size(),
        " embedding values (dim ", dim, "), ", videos.creator_ids.size(), " creators, ",
        videos.duration_ms.size(), " durations, ", videos.upload_time_ms.size(),
        " upload times, ", videos.popularity.size(), " popularities"));
  }
  auto delta = std::shared_ptr<CatalogDelta>(new CatalogDelta());
  delta->dim_ = dim;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t id = videos.ids[i];
    if (!delta->rows_.try_emplace(id, static_cast<int32_t>(i)).second) {
      return BadVideo(id, "appears twice");
    }
    const float* e = &videos.embeddings[i * dim];
    bool zero = true;
    for (int j = 0; j < dim; ++j) {
      if (!std::isfinite(e[j])) return BadVideo(id, "embedding holds NaN or Inf");
      zero &= e[j] == 0.f;
    }
    if (zero) return BadVideo(id, "embedding is all zeros");
    if (videos.duration_ms[i] < 0) return BadVideo(id, "negative duration");
    if (videos.upload_time_ms[i] < 0) return BadVideo(id, "negative upload time");
    if (!(videos.popularity[i] >= 0) || !std::isfinite(videos.popularity[i])) {
      return BadVideo(id, "popularity must be finite and >= 0");
    }
    if (auto creator = base.CreatorIndex(videos.creator_ids[i])) {
      delta->creator_videos_.push_back(base.stats().creator_videos[*creator]);
      delta->creator_popularity_.push_back(base.stats().creator_popularity[*creator]);
    } else {
      delta->creator_videos_.push_back(1.f);
      delta->creator_popularity_.push_back(videos.popularity[i]);
    }
  }
  delta->videos_ = std::move(videos);
  const VideoColumns& v = delta->videos_;
  auto sorted = [&](auto better) {
    std::vector<int32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    std::sort(rows.begin(), rows.end(), [&](int32_t a, int32_t b) {
      return better(a, b) || (!better(b, a) && v.ids[a] < v.ids[b]);
    });
    return rows;
  };
  delta->popular_ =
      sorted([&](int32_t a, int32_t b) { return v.popularity[a] > v.popularity[b]; });
  delta->fresh_ = sorted(
      [&](int32_t a, int32_t b) { return v.upload_time_ms[a] > v.upload_time_ms[b]; });
  return std::shared_ptr<const CatalogDelta>(std::move(delta));
}

std::shared_ptr<const CatalogDelta> CatalogDelta::Merge(const CatalogDelta& older,
                                                        const CatalogDelta& newer) {
  const int32_t old_n = older.size();
  auto delta = std::shared_ptr<CatalogDelta>(new CatalogDelta());
  delta->dim_ = older.dim_;
  VideoColumns& v = delta->videos_;
  auto concat = [](auto& out, const auto& a, const auto& b) {
    out.reserve(a.size() + b.size());
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
  };
  const VideoColumns& p = older.videos_;
  const VideoColumns& f = newer.videos_;
  concat(v.ids, p.ids, f.ids);
  concat(v.embeddings, p.embeddings, f.embeddings);
  concat(v.creator_ids, p.creator_ids, f.creator_ids);
  concat(v.duration_ms, p.duration_ms, f.duration_ms);
  concat(v.upload_time_ms, p.upload_time_ms, f.upload_time_ms);
  concat(v.popularity, p.popularity, f.popularity);
  concat(delta->creator_videos_, older.creator_videos_, newer.creator_videos_);
  concat(delta->creator_popularity_, older.creator_popularity_,
         newer.creator_popularity_);
  delta->rows_.reserve(older.rows_.size() + newer.rows_.size());
  delta->rows_.insert(older.rows_.begin(), older.rows_.end());
  for (const auto& [id, row] : newer.rows_) delta->rows_[id] = old_n + row;
  auto merged = [&](const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                    auto better) {
    std::vector<int32_t> out;
    out.reserve(a.size() + b.size());
    auto before = [&](int32_t x, int32_t y) {
      return better(x, y) || (!better(y, x) && v.ids[x] < v.ids[y]);
    };
    size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
      if (j == b.size() || (i < a.size() && !before(old_n + b[j], a[i]))) {
        out.push_back(a[i++]);
      } else {
        out.push_back(old_n + b[j++]);
      }
    }
    return out;
  };
  delta->popular_ = merged(older.popular_, newer.popular_, [&](int32_t a, int32_t b) {
    return v.popularity[a] > v.popularity[b];
  });
  delta->fresh_ = merged(older.fresh_, newer.fresh_, [&](int32_t a, int32_t b) {
    return v.upload_time_ms[a] > v.upload_time_ms[b];
  });
  return delta;
}

std::shared_ptr<const UserDelta> UserDelta::Merge(const UserDelta& older,
                                                  const UserDelta& newer) {
  auto merged = std::make_shared<UserDelta>(older);
  for (const auto& [id, row] : newer.rows) {
    const float* e = &newer.embeddings[size_t(row) * newer.dim];
    auto [it, added] = merged->rows.try_emplace(id, merged->size());
    if (added) {
      merged->embeddings.insert(merged->embeddings.end(), e, e + newer.dim);
      merged->activity.push_back(newer.activity[row]);
    } else {
      std::copy(e, e + newer.dim, &merged->embeddings[size_t(it->second) * merged->dim]);
      merged->activity[it->second] = newer.activity[row];
    }
  }
  return merged;
}

std::optional<int32_t> CatalogDelta::Row(uint64_t id) const {
  auto it = rows_.find(id);
  if (it == rows_.end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<const CatalogView> CatalogView::Of(std::shared_ptr<const Catalog> base,
                                                   uint64_t version) {
  auto view = std::shared_ptr<CatalogView>(new CatalogView());
  view->base_ = base.get();
  view->base_rows_ = base->num_videos();
  view->owned_base_ = std::move(base);
  view->version_ = version;
  return view;
}

CatalogView CatalogView::Borrow(const Catalog& base) {
  CatalogView view;
  view.base_ = &base;
  view.base_rows_ = base.num_videos();
  return view;
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::Create(
    std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
    std::shared_ptr<const UserDelta> users) {
  DeltaSegments segments;
  if (delta != nullptr) segments.push_back(std::move(delta));
  UserSegments user_segments;
  if (users != nullptr) user_segments.push_back(std::move(users));
  return Make(std::move(base), std::move(segments), std::move(tombstones), version,
              std::move(user_segments), /*check=*/true);
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::Create(
    std::shared_ptr<const Catalog> base, DeltaSegments delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version, UserSegments users) {
  return Make(std::move(base), std::move(delta), std::move(tombstones), version,
              std::move(users), /*check=*/true);
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::CreateTrusted(
    std::shared_ptr<const Catalog> base, DeltaSegments delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version, UserSegments users) {
  return Make(std::move(base), std::move(delta), std::move(tombstones), version,
              std::move(users), /*check=*/false);
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::Make(
    std::shared_ptr<const Catalog> base, DeltaSegments delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version, UserSegments users,
    bool check) {
  std::erase_if(users, [](const auto& u) { return u == nullptr || u->size() == 0; });
  for (const auto& u : users) {
    if (u->dim != base->dim() ||
        u->embeddings.size() != size_t(u->size()) * base->dim() ||
        u->rows.size() != size_t(u->size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("user delta of dimension ", u->dim, " with ", u->size(),
                       " users does not fit a catalogue of dimension ", base->dim()));
    }
  }
  std::erase_if(delta, [](const auto& d) { return d == nullptr || d->size() == 0; });
  if (delta.size() > kMaxSegments || users.size() > kMaxSegments) {
    return absl::InvalidArgumentError(
        absl::StrCat("a view holds at most ", kMaxSegments, " delta segments; got ",
                     delta.size(), " of videos and ", users.size(), " of users"));
  }
  const int64_t base_rows = base->num_videos();
  std::vector<int32_t> starts;
  int64_t delta_rows = 0;
  for (const auto& d : delta) {
    if (d->dim() != base->dim()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a delta segment of dimension ", d->dim(),
                       " does not fit a catalogue of dimension ", base->dim()));
    }
    if (base_rows + delta_rows + d->size() > INT32_MAX) {
      return absl::InvalidArgumentError("base and delta exceed 2^31-1 videos");
    }
    starts.push_back(static_cast<int32_t>(delta_rows));
    delta_rows += d->size();
  }
  if (tombstones != nullptr && tombstones->size() > size_t(base_rows + delta_rows)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tombstones cover ", tombstones->size(), " rows, the view has ",
                     base_rows + delta_rows));
  }
  auto dead = [&](int64_t row) {
    return tombstones != nullptr && tombstones->Contains(static_cast<int32_t>(row));
  };
  if (check) {
    for (size_t s = 0; s < delta.size(); ++s) {
      const CatalogDelta& d = *delta[s];
      for (int32_t i = 0; i < d.size(); ++i) {
        const uint64_t id = d.videos().ids[i];
        bool latest = d.Row(id) == i;
        for (size_t t = s + 1; latest && t < delta.size(); ++t) {
          latest = !delta[t]->Row(id).has_value();
        }
        if (latest) {
          if (auto b = base->VideoRow(id); b.has_value() && !dead(*b)) {
            return BadVideo(id, "is in the delta but its base row is not tombstoned");
          }
        } else if (!dead(base_rows + starts[s] + i)) {
          return BadVideo(id, "has an older delta row that is not tombstoned");
        }
      }
    }
  }
  auto view = std::shared_ptr<CatalogView>(new CatalogView());
  view->base_ = base.get();
  view->base_rows_ = static_cast<int32_t>(base_rows);
  view->owned_base_ = std::move(base);
  view->delta_rows_ = static_cast<int32_t>(delta_rows);
  view->segments_ = std::move(delta);
  view->starts_ = std::move(starts);
  if (tombstones != nullptr && tombstones->count() > 0)
    view->tombstones_ = std::move(tombstones);
  view->users_ = std::move(users);
  view->version_ = version;
  return std::shared_ptr<const CatalogView>(std::move(view));
}

std::vector<uint64_t> CatalogView::DeltaUserIds() const {
  std::vector<uint64_t> ids;
  for (const auto& u : users_) {
    for (const auto& [id, row] : u->rows) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

int32_t CatalogView::num_live_videos() const {
  return base_rows_ + delta_rows_ -
         static_cast<int32_t>(tombstones_ == nullptr ? 0 : tombstones_->count());
}

std::optional<int32_t> CatalogView::VideoRow(uint64_t id) const {
  for (size_t s = segments_.size(); s-- > 0;) {
    if (auto row = segments_[s]->Row(id)) {
      const int32_t r = base_rows_ + starts_[s] + *row;
      if (!live(r)) return std::nullopt;
      return r;
    }
  }
  auto row = base_->VideoRow(id);
  if (!row || !live(*row)) return std::nullopt;
  return row;
}

void CatalogView::Search(const float* q, const SearchOptions& options,
                         const RowPredicate& accept, SearchScratch* scratch,
                         std::vector<Hit>* out, SearchStats* stats) const {
  RowPredicate base_accept = accept;
  base_accept.Exclude(tombstones_.get());
  base_->index().Search(q, options, base_accept, scratch, out, stats);
  if (delta_rows_ == 0 || options.k <= 0) return;
  // The delta is small: score all of it and merge.
  const size_t k = static_cast<size_t>(options.k);
  const size_t d = dim();
  for (size_t s = 0; s < segments_.size(); ++s) {
    const VideoColumns& v = segments_[s]->videos();
    const int32_t first = base_rows_ + starts_[s];
    const int32_t n = segments_[s]->size();
    for (int32_t i = 0; i < n; ++i) {
      const int32_t row = first + i;
      if (!live(row) || !accept.Accepts(row)) continue;
      const Hit hit{simd::Dot(q, &v.embeddings[size_t(i) * d], d), row};
      if (out->size() < k) {
        out->insert(std::upper_bound(out->begin(), out->end(), hit, HitIsBetter()), hit);
      } else if (BetterHit(hit, out->back())) {
        out->pop_back();
        out->insert(std::upper_bound(out->begin(), out->end(), hit, HitIsBetter()), hit);
      }
    }
  }
}

}  // namespace feedrank
