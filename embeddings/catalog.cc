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
    return Bad(file,
               absl::StrCat("has ", got, " entries, expected ", want, " (", what, ")"));
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
      return Bad(file,
                 absl::StrCat("row ", i, " holds ", v[i], ", expected a value >= 0"));
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
      return Bad(file, absl::StrCat("id ", ids[i], " appears at rows ", it->second,
                                    " and ", i, "; ids must be unique"));
    }
  }
  return absl::OkStatus();
}

// Reads `dir`/`file` as a 1-D (rank 1) or 2-D array with `cols` columns.
template <typename T>
absl::StatusOr<std::vector<T>> ReadColumn(FileSystem& fs, const std::string& dir,
                                          const std::string& file, int64_t cols) {
  const std::string path = BundlePath(dir, file);
  ASSIGN_OR_RETURN(NpyArray<T> array, ReadNpy<T>(fs, path, cols > 0 ? 2 : 1));
  if (cols > 0 && array.shape[1] != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": has ", array.shape[1], " columns, expected dim ", cols));
  }
  return std::move(array.data);
}

// Zero vectors score 0 against every query and degenerate the HNSW build.
absl::Status CheckNonZeroRows(absl::string_view file, const std::vector<float>& v,
                              size_t cols) {
  for (size_t row = 0; row * cols < v.size(); ++row) {
    const float* x = &v[row * cols];
    bool zero = true;
    for (size_t j = 0; j < cols && zero; ++j) zero = x[j] == 0.f;
    if (zero) {
      return Bad(file, absl::StrCat("row ", row,
                                    " is all zeros; every video needs a non-zero "
                                    "embedding"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

CatalogStats DeriveCatalogStats(const VideoColumns& videos, const UserColumns& users,
                                int dim) {
  CatalogStats stats;
  absl::flat_hash_map<uint64_t, int32_t> index;
  for (size_t row = 0; row < videos.creator_ids.size(); ++row) {
    auto [it, added] = index.try_emplace(videos.creator_ids[row],
                                         static_cast<int32_t>(stats.creator_ids.size()));
    if (added) {
      stats.creator_ids.push_back(videos.creator_ids[row]);
      stats.creator_videos.push_back(0.f);
      stats.creator_popularity.push_back(0.f);
    }
    stats.creator_videos[it->second] += 1.f;
    stats.creator_popularity[it->second] +=
        row < videos.popularity.size() ? videos.popularity[row] : 0.f;
  }
  stats.mean_user_embedding.assign(dim, 0.f);
  const size_t u = dim > 0 ? users.embeddings.size() / dim : 0;
  if (u > 0) {
    std::vector<double> sum(dim, 0.0);
    for (size_t row = 0; row < u; ++row) {
      const float* e = &users.embeddings[row * dim];
      for (int j = 0; j < dim; ++j) sum[j] += e[j];
    }
    for (int j = 0; j < dim; ++j) {
      stats.mean_user_embedding[j] = static_cast<float>(sum[j] / double(u));
    }
  }
  return stats;
}

namespace {

absl::Status ValidateStats(const CatalogStats& stats, int dim) {
  const size_t c = stats.creator_ids.size();
  if (stats.creator_videos.size() != c || stats.creator_popularity.size() != c) {
    return Bad(kCatalogStatsDir,
               absl::StrCat("creator tables have ", c, ", ", stats.creator_videos.size(),
                            " and ", stats.creator_popularity.size(),
                            " entries; they must match"));
  }
  if (stats.mean_user_embedding.size() != size_t(dim)) {
    return Bad(kCatalogStatsDir,
               absl::StrCat("mean user embedding has ", stats.mean_user_embedding.size(),
                            " entries, expected dim ", dim));
  }
  for (size_t i = 0; i < c; ++i) {
    if (!(stats.creator_videos[i] >= 1) || !(stats.creator_popularity[i] >= 0) ||
        !std::isfinite(stats.creator_popularity[i])) {
      return Bad(
          kCatalogStatsDir,
          absl::StrCat("creator ", stats.creator_ids[i], " has ", stats.creator_videos[i],
                       " videos and popularity ", stats.creator_popularity[i],
                       "; expected >= 1 video and a finite popularity >= 0"));
    }
  }
  for (float x : stats.mean_user_embedding) {
    if (!std::isfinite(x))
      return Bad(kCatalogStatsDir, "mean user embedding is not finite");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Create(const BundleManifest& manifest,
                                                         VideoColumns videos,
                                                         UserColumns users,
                                                         std::unique_ptr<AnnIndex> index,
                                                         const CatalogStats* stats) {
  const size_t dim = manifest.dim();
  const size_t n = manifest.num_videos();
  const size_t u = manifest.num_users();
  if (dim == 0) return absl::InvalidArgumentError("manifest dim is 0");
  RETURN_IF_ERROR(
      CheckLength(kVideoIdsFile, videos.ids.size(), n, "manifest num_videos"));
  RETURN_IF_ERROR(CheckLength(kVideoEmbeddingsFile, videos.embeddings.size(), n * dim,
                              "num_videos x dim"));
  RETURN_IF_ERROR(
      CheckLength(kVideoCreatorIdsFile, videos.creator_ids.size(), n, "one per video"));
  RETURN_IF_ERROR(
      CheckLength(kVideoDurationFile, videos.duration_ms.size(), n, "one per video"));
  RETURN_IF_ERROR(CheckLength(kVideoUploadTimeFile, videos.upload_time_ms.size(), n,
                              "one per video"));
  RETURN_IF_ERROR(
      CheckLength(kVideoPopularityFile, videos.popularity.size(), n, "one per video"));
  RETURN_IF_ERROR(CheckLength(kUserIdsFile, users.ids.size(), u, "manifest num_users"));
  RETURN_IF_ERROR(CheckLength(kUserEmbeddingsFile, users.embeddings.size(), u * dim,
                              "num_users x dim"));
  RETURN_IF_ERROR(
      CheckLength(kUserActivityFile, users.activity.size(), u, "one per user"));
  RETURN_IF_ERROR(CheckFinite(kVideoEmbeddingsFile, videos.embeddings, dim));
  RETURN_IF_ERROR(CheckFinite(kUserEmbeddingsFile, users.embeddings, dim));
  RETURN_IF_ERROR(CheckFinite(kVideoPopularityFile, videos.popularity, 1));
  RETURN_IF_ERROR(CheckFinite(kUserActivityFile, users.activity, 1));
  RETURN_IF_ERROR(CheckNonNegative(kVideoDurationFile, videos.duration_ms));
  RETURN_IF_ERROR(CheckNonNegative(kVideoUploadTimeFile, videos.upload_time_ms));
  RETURN_IF_ERROR(CheckNonNegative(kVideoPopularityFile, videos.popularity));
  RETURN_IF_ERROR(CheckNonNegative(kUserActivityFile, users.activity));
  RETURN_IF_ERROR(CheckNonZeroRows(kVideoEmbeddingsFile, videos.embeddings, dim));

  std::unique_ptr<Catalog> catalog(new Catalog());
  RETURN_IF_ERROR(IndexIds(kVideoIdsFile, videos.ids, &catalog->video_rows_));
  RETURN_IF_ERROR(IndexIds(kUserIdsFile, users.ids, &catalog->user_rows_));
  if (index != nullptr) {
    if (index->size() != int64_t(n) || index->dim() != int(dim)) {
      return Bad(kIndexFile, absl::StrCat("holds ", index->size(), " x ", index->dim(),
                                          " vectors, expected ", n, " x ", dim));
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
  RETURN_IF_ERROR(catalog->Derive(stats));
  return catalog;
}

absl::Status Catalog::Derive(const CatalogStats* stats) {
  const int32_t n = num_videos();
  if (stats != nullptr) {
    RETURN_IF_ERROR(ValidateStats(*stats, dim_));
    stats_ = *stats;
  } else {
    stats_ = DeriveCatalogStats(videos_, users_, dim_);
  }
  RETURN_IF_ERROR(IndexIds(kCatalogStatsDir, stats_.creator_ids, &creator_rows_));
  creator_index_.resize(n);
  for (int32_t row = 0; row < n; ++row) {
    auto it = creator_rows_.find(videos_.creator_ids[row]);
    if (it == creator_rows_.end()) {
      return Bad(kCatalogStatsDir,
                 absl::StrCat("has no entry for creator ", videos_.creator_ids[row],
                              " of video ", videos_.ids[row]));
    }
    creator_index_[row] = it->second;
  }

  auto top_rows = [this, n](auto better) {
    std::vector<int32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    const int32_t keep = std::min<int32_t>(n, kListLength);
    std::partial_sort(
        rows.begin(), rows.begin() + keep, rows.end(), [&](int32_t a, int32_t b) {
          return better(a, b) || (!better(b, a) && videos_.ids[a] < videos_.ids[b]);
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
  return absl::OkStatus();
}

absl::Status Catalog::ReadColumns(const std::string& dir, const BundleManifest& manifest,
                                  VideoColumns* videos, UserColumns* users,
                                  FileSystem& fs) {
  const int64_t dim = manifest.dim();
  ASSIGN_OR_RETURN(videos->ids, ReadColumn<uint64_t>(fs, dir, kVideoIdsFile, 0));
  ASSIGN_OR_RETURN(videos->embeddings,
                   ReadColumn<float>(fs, dir, kVideoEmbeddingsFile, dim));
  ASSIGN_OR_RETURN(videos->creator_ids,
                   ReadColumn<uint64_t>(fs, dir, kVideoCreatorIdsFile, 0));
  ASSIGN_OR_RETURN(videos->duration_ms,
                   ReadColumn<int64_t>(fs, dir, kVideoDurationFile, 0));
  ASSIGN_OR_RETURN(videos->upload_time_ms,
                   ReadColumn<int64_t>(fs, dir, kVideoUploadTimeFile, 0));
  ASSIGN_OR_RETURN(videos->popularity,
                   ReadColumn<float>(fs, dir, kVideoPopularityFile, 0));
  ASSIGN_OR_RETURN(users->ids, ReadColumn<uint64_t>(fs, dir, kUserIdsFile, 0));
  ASSIGN_OR_RETURN(users->embeddings,
                   ReadColumn<float>(fs, dir, kUserEmbeddingsFile, dim));
  ASSIGN_OR_RETURN(users->activity, ReadColumn<float>(fs, dir, kUserActivityFile, 0));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Load(const std::string& dir,
                                                       const BundleManifest& manifest,
                                                       FileSystem& fs) {
  const int64_t dim = manifest.dim();
  VideoColumns videos;
  UserColumns users;
  RETURN_IF_ERROR(ReadColumns(dir, manifest, &videos, &users, fs));
  std::optional<CatalogStats> stats;
  const std::string stats_dir = BundlePath(dir, kCatalogStatsDir);
  ASSIGN_OR_RETURN(const bool has_stats, fs.Exists(stats_dir));
  if (has_stats) {
    stats.emplace();
    ASSIGN_OR_RETURN(stats->creator_ids,
                     ReadColumn<uint64_t>(fs, stats_dir, kCreatorIdsFile, 0));
    ASSIGN_OR_RETURN(stats->creator_videos,
                     ReadColumn<float>(fs, stats_dir, kCreatorVideosFile, 0));
    ASSIGN_OR_RETURN(stats->creator_popularity,
                     ReadColumn<float>(fs, stats_dir, kCreatorPopularityFile, 0));
    ASSIGN_OR_RETURN(stats->mean_user_embedding,
                     ReadColumn<float>(fs, stats_dir, kMeanUserEmbeddingFile, 0));
  }
  ASSIGN_OR_RETURN(
      auto index,
      AnnIndex::Load(BundlePath(dir, kIndexFile), manifest.index(), static_cast<int>(dim),
                     static_cast<int64_t>(manifest.num_videos()), fs));
  auto catalog = Create(manifest, std::move(videos), std::move(users), std::move(index),
                        stats ? &*stats : nullptr);
  if (!catalog.ok()) {
    return absl::Status(catalog.status().code(),
                        BundlePath(dir, std::string(catalog.status().message())));
  }
  return catalog;
}

absl::Status Catalog::WriteColumns(const std::string& dir, int dim,
                                   const VideoColumns& videos, const UserColumns& users,
                                   const CatalogStats* stats, FileSystem& fs) {
  const int64_t n = static_cast<int64_t>(videos.ids.size());
  const int64_t u = static_cast<int64_t>(users.ids.size());
  auto path = [&](const char* file) { return BundlePath(dir, file); };
  RETURN_IF_ERROR(WriteNpy<uint64_t>(fs, path(kVideoIdsFile), videos.ids, {n}));
  RETURN_IF_ERROR(
      WriteNpy<float>(fs, path(kVideoEmbeddingsFile), videos.embeddings, {n, dim}));
  RETURN_IF_ERROR(
      WriteNpy<uint64_t>(fs, path(kVideoCreatorIdsFile), videos.creator_ids, {n}));
  RETURN_IF_ERROR(
      WriteNpy<int64_t>(fs, path(kVideoDurationFile), videos.duration_ms, {n}));
  RETURN_IF_ERROR(
      WriteNpy<int64_t>(fs, path(kVideoUploadTimeFile), videos.upload_time_ms, {n}));
  RETURN_IF_ERROR(
      WriteNpy<float>(fs, path(kVideoPopularityFile), videos.popularity, {n}));
  RETURN_IF_ERROR(WriteNpy<uint64_t>(fs, path(kUserIdsFile), users.ids, {u}));
  RETURN_IF_ERROR(
      WriteNpy<float>(fs, path(kUserEmbeddingsFile), users.embeddings, {u, dim}));
  RETURN_IF_ERROR(WriteNpy<float>(fs, path(kUserActivityFile), users.activity, {u}));
  if (stats != nullptr) {
    const std::string stats_dir = path(kCatalogStatsDir);
    RETURN_IF_ERROR(fs.CreateDir(stats_dir));
    const int64_t c = static_cast<int64_t>(stats->creator_ids.size());
    auto stats_path = [&](const char* file) { return BundlePath(stats_dir, file); };
    RETURN_IF_ERROR(
        WriteNpy<uint64_t>(fs, stats_path(kCreatorIdsFile), stats->creator_ids, {c}));
    RETURN_IF_ERROR(
        WriteNpy<float>(fs, stats_path(kCreatorVideosFile), stats->creator_videos, {c}));
    RETURN_IF_ERROR(WriteNpy<float>(fs, stats_path(kCreatorPopularityFile),
                                    stats->creator_popularity, {c}));
    RETURN_IF_ERROR(WriteNpy<float>(fs, stats_path(kMeanUserEmbeddingFile),
                                    stats->mean_user_embedding,
                                    {int64_t(stats->mean_user_embedding.size())}));
  }
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
                 TouchPages(stats_.creator_videos) +
                 TouchPages(stats_.creator_popularity);
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

std::optional<int32_t> Catalog::CreatorIndex(uint64_t creator_id) const {
  auto it = creator_rows_.find(creator_id);
  if (it == creator_rows_.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> Catalog::UserRow(uint64_t id) const {
  auto it = user_rows_.find(id);
  if (it == user_rows_.end()) return std::nullopt;
  return it->second;
}

}  // namespace feedrank
