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

absl::StatusOr<std::shared_ptr<const CatalogDelta>> CatalogDelta::Append(
    const Catalog& base, const CatalogDelta* previous, VideoColumns added) {
  if (previous == nullptr || previous->size() == 0) return Create(base, std::move(added));
  // Checked (and its stats and orders made) alone first.
  ASSIGN_OR_RETURN(std::shared_ptr<const CatalogDelta> fresh, Create(base, added));
  const int32_t old_n = previous->size();
  const int32_t add_n = fresh->size();
  auto delta = std::shared_ptr<CatalogDelta>(new CatalogDelta());
  delta->dim_ = previous->dim_;
  VideoColumns& v = delta->videos_;
  auto concat = [](auto& out, const auto& a, const auto& b) {
    out.reserve(a.size() + b.size());
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
  };
  const VideoColumns& p = previous->videos_;
  const VideoColumns& f = fresh->videos_;
  concat(v.ids, p.ids, f.ids);
  concat(v.embeddings, p.embeddings, f.embeddings);
  concat(v.creator_ids, p.creator_ids, f.creator_ids);
  concat(v.duration_ms, p.duration_ms, f.duration_ms);
  concat(v.upload_time_ms, p.upload_time_ms, f.upload_time_ms);
  concat(v.popularity, p.popularity, f.popularity);
  concat(delta->creator_videos_, previous->creator_videos_, fresh->creator_videos_);
  concat(delta->creator_popularity_, previous->creator_popularity_,
         fresh->creator_popularity_);
  delta->rows_ = previous->rows_;
  delta->rows_.reserve(previous->rows_.size() + add_n);
  for (int32_t i = 0; i < add_n; ++i) delta->rows_[f.ids[i]] = old_n + i;
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
  delta->popular_ =
      merged(previous->popular_, fresh->popular_,
             [&](int32_t a, int32_t b) { return v.popularity[a] > v.popularity[b]; });
  delta->fresh_ = merged(previous->fresh_, fresh->fresh_, [&](int32_t a, int32_t b) {
    return v.upload_time_ms[a] > v.upload_time_ms[b];
  });
  return std::shared_ptr<const CatalogDelta>(std::move(delta));
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
  return Make(std::move(base), std::move(delta), std::move(tombstones), version,
              std::move(users), /*check=*/true);
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::CreateTrusted(
    std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
    std::shared_ptr<const UserDelta> users) {
  return Make(std::move(base), std::move(delta), std::move(tombstones), version,
              std::move(users), /*check=*/false);
}

absl::StatusOr<std::shared_ptr<const CatalogView>> CatalogView::Make(
    std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
    std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
    std::shared_ptr<const UserDelta> users, bool check) {
  if (users != nullptr && users->size() > 0 &&
      (users->dim != base->dim() ||
       users->embeddings.size() != size_t(users->size()) * base->dim() ||
       users->rows.size() != size_t(users->size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("user delta of dimension ", users->dim, " with ", users->size(),
                     " users does not fit a catalogue of dimension ", base->dim()));
  }
  const int64_t base_rows = base->num_videos();
  const int64_t delta_rows = delta == nullptr ? 0 : delta->size();
  if (base_rows + delta_rows > INT32_MAX) {
    return absl::InvalidArgumentError("base and delta exceed 2^31-1 videos");
  }
  if (tombstones != nullptr && tombstones->size() > size_t(base_rows + delta_rows)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tombstones cover ", tombstones->size(), " rows, the view has ",
                     base_rows + delta_rows));
  }
  auto dead = [&](int64_t row) {
    return tombstones != nullptr && tombstones->Contains(static_cast<int32_t>(row));
  };
  if (check && delta != nullptr) {
    std::vector<bool> latest(delta_rows, false);
    for (int32_t i = 0; i < delta_rows; ++i) {
      const uint64_t id = delta->videos().ids[i];
      const auto row = delta->Row(id);
      latest[i] = row.has_value() && *row == i;
      if (latest[i]) {
        if (auto b = base->VideoRow(id); b.has_value() && !dead(*b)) {
          return BadVideo(id, "is in the delta but its base row is not tombstoned");
        }
      } else if (!dead(base_rows + i)) {
        return BadVideo(id, "has an older delta row that is not tombstoned");
      }
    }
  }
  auto view = std::shared_ptr<CatalogView>(new CatalogView());
  view->base_ = base.get();
  view->base_rows_ = static_cast<int32_t>(base_rows);
  view->owned_base_ = std::move(base);
  view->delta_rows_ = static_cast<int32_t>(delta_rows);
  view->delta_ = std::move(delta);
  if (tombstones != nullptr && tombstones->count() > 0)
    view->tombstones_ = std::move(tombstones);
  if (users != nullptr && users->size() > 0) view->users_ = std::move(users);
  view->version_ = version;
  return std::shared_ptr<const CatalogView>(std::move(view));
}

int32_t CatalogView::num_live_videos() const {
  return base_rows_ + delta_rows_ -
         static_cast<int32_t>(tombstones_ == nullptr ? 0 : tombstones_->count());
}

std::optional<int32_t> CatalogView::VideoRow(uint64_t id) const {
  if (delta_ != nullptr) {
    if (auto row = delta_->Row(id)) {
      if (!live(base_rows_ + *row)) return std::nullopt;
      return base_rows_ + *row;
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
  const VideoColumns& v = delta_->videos();
  const size_t d = dim();
  for (int32_t i = 0; i < delta_rows_; ++i) {
    const int32_t row = base_rows_ + i;
    if (!live(row) || !accept.Accepts(row)) continue;
    const Hit hit{simd::Dot(q, &v.embeddings[size_t(i) * d], d), row};
    if (out->size() < k) {
      out->insert(std::upper_bound(out->begin(), out->end(), hit, BetterHit), hit);
    } else if (BetterHit(hit, out->back())) {
      out->pop_back();
      out->insert(std::upper_bound(out->begin(), out->end(), hit, BetterHit), hit);
    }
  }
}

}  // namespace feedrank
