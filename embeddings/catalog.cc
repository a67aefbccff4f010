#include "embeddings/catalog.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/npy.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

absl::Status Bad(absl::string_view file, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

absl::Status CheckLength(absl::string_view file, size_t got, size_t want,
                         absl::string_view what) {
  if (got != want) {
    return Bad(file, absl::StrCat("has ", got, " entries, expected ", want, " (",
                                  what, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(absl::string_view file, const std::vector<float>& v,
                         size_t cols) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return Bad(file, absl::StrCat("row ", i / cols, " holds ", v[i],
                                    "; NaN and Inf are not allowed"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckNonNegative(absl::string_view file, const std::vector<T>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!(v[i] >= 0)) {
      return Bad(file, absl::StrCat("row ", i, " holds ", v[i],
                                    ", expected a value >= 0"));
    }
  }
  return absl::OkStatus();
}

absl::Status IndexIds(absl::string_view file, const std::vector<uint64_t>& ids,
                      absl::flat_hash_map<uint64_t, int32_t>* rows) {
  rows->clear();
  rows->reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto [it, inserted] = rows->try_emplace(ids[i], static_cast<int32_t>(i));
    if (!inserted) {
      return Bad(file, absl::StrCat("id ", ids[i], " appears at rows ",
                                    it->second, " and ", i,
                                    "; ids must be unique"));
    }
  }
  return absl::OkStatus();
}

// Reads `dir`/`file` as a 1-D (rank 1) or 2-D array with `cols` columns.
template <typename T>
absl::StatusOr<std::vector<T>> ReadColumn(const std::string& dir,
                                          const std::string& file, int64_t cols) {
  const std::string path = BundlePath(dir, file);
  ASSIGN_OR_RETURN(NpyArray<T> array, ReadNpy<T>(path, cols > 0 ? 2 : 1));
  if (cols > 0 && array.shape[1] != cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": has ", array.shape[1], " columns, expected dim ", cols));
  }
  return std::move(array.data);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Create(
    const BundleManifest& manifest, VideoColumns videos, UserColumns users,
    std::unique_ptr<AnnIndex> index) {
  const size_t dim = manifest.dim();
  const size_t n = manifest.num_videos();
  const size_t u = manifest.num_users();
  if (dim == 0) return absl::InvalidArgumentError("manifest dim is 0");
  RETURN_IF_ERROR(CheckLength(kVideoIdsFile, videos.ids.size(), n,
                              "manifest num_videos"));
  RETURN_IF_ERROR(CheckLength(kVideoEmbeddingsFile, videos.embeddings.size(),
                              n * dim, "num_videos x dim"));
  RETURN_IF_ERROR(CheckLength(kVideoCreatorIdsFile, videos.creator_ids.size(), n,
                              "one per video"));
  RETURN_IF_ERROR(CheckLength(kVideoDurationFile, videos.duration_ms.size(), n,
                              "one per video"));
  RETURN_IF_ERROR(CheckLength(kVideoUploadTimeFile, videos.upload_time_ms.size(),
                              n, "one per video"));
  RETURN_IF_ERROR(CheckLength(kVideoPopularityFile, videos.popularity.size(), n,
                              "one per video"));
  RETURN_IF_ERROR(CheckLength(kUserIdsFile, users.ids.size(), u,
                              "manifest num_users"));
  RETURN_IF_ERROR(CheckLength(kUserEmbeddingsFile, users.embeddings.size(),
                              u * dim, "num_users x dim"));
  RETURN_IF_ERROR(CheckLength(kUserActivityFile, users.activity.size(), u,
                              "one per user"));
  RETURN_IF_ERROR(CheckFinite(kVideoEmbeddingsFile, videos.embeddings, dim));
  RETURN_IF_ERROR(CheckFinite(kUserEmbeddingsFile, users.embeddings, dim));
  RETURN_IF_ERROR(CheckFinite(kVideoPopularityFile, videos.popularity, 1));
  RETURN_IF_ERROR(CheckFinite(kUserActivityFile, users.activity, 1));
  RETURN_IF_ERROR(CheckNonNegative(kVideoDurationFile, videos.duration_ms));
  RETURN_IF_ERROR(CheckNonNegative(kVideoUploadTimeFile, videos.upload_time_ms));
  RETURN_IF_ERROR(CheckNonNegative(kVideoPopularityFile, videos.popularity));
  RETURN_IF_ERROR(CheckNonNegative(kUserActivityFile, users.activity));

  std::unique_ptr<Catalog> catalog(new Catalog());
  RETURN_IF_ERROR(IndexIds(kVideoIdsFile, videos.ids, &catalog->video_rows_));
  RETURN_IF_ERROR(IndexIds(kUserIdsFile, users.ids, &catalog->user_rows_));
  if (index != nullptr) {
    if (index->size() != int64_t(n) || index->dim() != int(dim)) {
      return Bad(kIndexFile, absl::StrCat("holds ", index->size(), " x ",
                                          index->dim(), " vectors, expected ", n,
                                          " x ", dim));
    }
    absl::Status same = index->VerifyVectors(videos.embeddings.data());
    if (!same.ok()) return Bad(kIndexFile, same.message());
  }
  catalog->dim_ = static_cast<int>(dim);
  catalog->videos_ = std::move(videos);
  catalog->users_ = std::move(users);
  catalog->index_ = std::move(index);
  catalog->video_vectors_ = catalog->videos_.embeddings.data();
  if (catalog->index_ != nullptr && catalog->index_->row_vectors() != nullptr) {
    // Identical (verified above): share the index's copy.
    catalog->video_vectors_ = catalog->index_->row_vectors();
    std::vector<float>().swap(catalog->videos_.embeddings);
  }
  catalog->Derive();
  return catalog;
}

void Catalog::Derive() {
  const int32_t n = num_videos();
  absl::flat_hash_map<uint64_t, int32_t> creators;
  creator_index_.resize(n);
  for (int32_t row = 0; row < n; ++row) {
    auto [it, inserted] = creators.try_emplace(
        videos_.creator_ids[row], static_cast<int32_t>(creators.size()));
    creator_index_[row] = it->second;
  }
  num_creators_ = static_cast<int32_t>(creators.size());
  creator_videos_.assign(num_creators_, 0.f);
  creator_popularity_.assign(num_creators_, 0.f);
  for (int32_t row = 0; row < n; ++row) {
    creator_videos_[creator_index_[row]] += 1.f;
    creator_popularity_[creator_index_[row]] += videos_.popularity[row];
  }

  mean_user_.assign(dim_, 0.f);
  const int32_t u = num_users();
  if (u > 0) {
    std::vector<double> sum(dim_, 0.0);
    for (int32_t row = 0; row < u; ++row) {
      const float* e = user_embedding(row);
      for (int j = 0; j < dim_; ++j) sum[j] += e[j];
    }
    for (int j = 0; j < dim_; ++j) mean_user_[j] = static_cast<float>(sum[j] / u);
  }

  auto top_rows = [n](auto better) {
    std::vector<int32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    const int32_t keep = std::min<int32_t>(n, kListLength);
    std::partial_sort(rows.begin(), rows.begin() + keep, rows.end(),
                      [&](int32_t a, int32_t b) {
                        return better(a, b) || (!better(b, a) && a < b);
                      });
    rows.resize(keep);
    return rows;
  };
  popular_ = top_rows([this](int32_t a, int32_t b) {
    return videos_.popularity[a] > videos_.popularity[b];
  });
  fresh_ = top_rows([this](int32_t a, int32_t b) {
    return videos_.upload_time_ms[a] > videos_.upload_time_ms[b];
  });
}

absl::Status Catalog::ReadColumns(const std::string& dir,
                                  const BundleManifest& manifest,
                                  VideoColumns* videos, UserColumns* users) {
  const int64_t dim = manifest.dim();
  ASSIGN_OR_RETURN(videos->ids, ReadColumn<uint64_t>(dir, kVideoIdsFile, 0));
  ASSIGN_OR_RETURN(videos->embeddings,
                   ReadColumn<float>(dir, kVideoEmbeddingsFile, dim));
  ASSIGN_OR_RETURN(videos->creator_ids,
                   ReadColumn<uint64_t>(dir, kVideoCreatorIdsFile, 0));
  ASSIGN_OR_RETURN(videos->duration_ms,
                   ReadColumn<int64_t>(dir, kVideoDurationFile, 0));
  ASSIGN_OR_RETURN(videos->upload_time_ms,
                   ReadColumn<int64_t>(dir, kVideoUploadTimeFile, 0));
  ASSIGN_OR_RETURN(videos->popularity,
                   ReadColumn<float>(dir, kVideoPopularityFile, 0));
  ASSIGN_OR_RETURN(users->ids, ReadColumn<uint64_t>(dir, kUserIdsFile, 0));
  ASSIGN_OR_RETURN(users->embeddings,
                   ReadColumn<float>(dir, kUserEmbeddingsFile, dim));
  ASSIGN_OR_RETURN(users->activity, ReadColumn<float>(dir, kUserActivityFile, 0));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Load(
    const std::string& dir, const BundleManifest& manifest) {
  const int64_t dim = manifest.dim();
  VideoColumns videos;
  UserColumns users;
  RETURN_IF_ERROR(ReadColumns(dir, manifest, &videos, &users));
  ASSIGN_OR_RETURN(auto index,
                   AnnIndex::Load(BundlePath(dir, kIndexFile), manifest.index(),
                                  static_cast<int>(dim),
                                  static_cast<int64_t>(manifest.num_videos())));
  auto catalog = Create(manifest, std::move(videos), std::move(users),
                        std::move(index));
  if (!catalog.ok()) {
    return absl::Status(catalog.status().code(),
                        BundlePath(dir, std::string(catalog.status().message())));
  }
  return catalog;
}

absl::Status Catalog::WriteColumns(const std::string& dir, int dim,
                                   const VideoColumns& videos,
                                   const UserColumns& users) {
  const int64_t n = static_cast<int64_t>(videos.ids.size());
  const int64_t u = static_cast<int64_t>(users.ids.size());
  auto path = [&](const char* file) { return BundlePath(dir, file); };
  RETURN_IF_ERROR(WriteNpy<uint64_t>(path(kVideoIdsFile), videos.ids, {n}));
  RETURN_IF_ERROR(
      WriteNpy<float>(path(kVideoEmbeddingsFile), videos.embeddings, {n, dim}));
  RETURN_IF_ERROR(
      WriteNpy<uint64_t>(path(kVideoCreatorIdsFile), videos.creator_ids, {n}));
  RETURN_IF_ERROR(
      WriteNpy<int64_t>(path(kVideoDurationFile), videos.duration_ms, {n}));
  RETURN_IF_ERROR(
      WriteNpy<int64_t>(path(kVideoUploadTimeFile), videos.upload_time_ms, {n}));
  RETURN_IF_ERROR(
      WriteNpy<float>(path(kVideoPopularityFile), videos.popularity, {n}));
  RETURN_IF_ERROR(WriteNpy<uint64_t>(path(kUserIdsFile), users.ids, {u}));
  RETURN_IF_ERROR(
      WriteNpy<float>(path(kUserEmbeddingsFile), users.embeddings, {u, dim}));
  RETURN_IF_ERROR(WriteNpy<float>(path(kUserActivityFile), users.activity, {u}));
  return absl::OkStatus();
}

namespace {
template <typename T>
uint64_t TouchPages(const std::vector<T>& v) {
  uint64_t sum = 0;
  const volatile uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(T); i += 4096) sum += p[i];
  return sum;
}
}  // namespace

void Catalog::TouchMemory() const {
  uint64_t sum = TouchPages(videos_.ids) + TouchPages(videos_.embeddings) +
                 TouchPages(videos_.creator_ids) + TouchPages(videos_.duration_ms) +
                 TouchPages(videos_.upload_time_ms) + TouchPages(videos_.popularity) +
                 TouchPages(users_.ids) + TouchPages(users_.embeddings) +
                 TouchPages(users_.activity) + TouchPages(creator_index_) +
                 TouchPages(creator_videos_) + TouchPages(creator_popularity_);
  if (index_ != nullptr) sum += index_->TouchMemory();
  // The id maps are probed at random by requests; walking them touches them.
  for (const auto& [id, row] : video_rows_) sum += row;
  for (const auto& [id, row] : user_rows_) sum += row;
  volatile uint64_t keep = sum;
  (void)keep;
}

std::optional<int32_t> Catalog::VideoRow(uint64_t id) const {
  auto it = video_rows_.find(id);
  if (it == video_rows_.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> Catalog::UserRow(uint64_t id) const {
  auto it = user_rows_.find(id);
  if (it == user_rows_.end()) return std::nullopt;
  return it->second;
}

}  // namespace feedrank
