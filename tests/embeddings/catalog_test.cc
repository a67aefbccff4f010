#include "embeddings/catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "base/npy.h"
#include "cli/synth.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::feedrank::testing::CopyDir;
using ::feedrank::testing::ReadFile;
using ::feedrank::testing::SmallSynth;
using ::feedrank::testing::TempDir;
using ::feedrank::testing::WriteFile;
using ::feedrank::testing::WriteSmallBundle;
using ::testing::HasSubstr;

constexpr int64_t kVideos = 2000;
constexpr int64_t kUsers = 200;
constexpr int kDim = 32;

// The inputs of Catalog::Create.
struct Columns {
  BundleManifest manifest;
  VideoColumns videos;
  UserColumns users;
};

std::unique_ptr<AnnIndex> BuildIndex(const std::string& type, const std::vector<float>& x,
                                     int64_t n) {
  IndexSpec spec;
  spec.set_type(type);
  spec.set_hnsw_m(16);
  spec.set_hnsw_ef_construction(40);
  auto index = AnnIndex::Build(x.data(), n, kDim, &spec, nullptr, /*threads=*/1);
  EXPECT_TRUE(index.ok()) << index.status();
  return index.ok() ? *std::move(index) : nullptr;
}

void ExpectRefusal(const absl::Status& status, absl::StatusCode code,
                   const std::string& file, const std::string& problem) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(file));
  EXPECT_THAT(std::string(status.message()), HasSubstr(problem));
}

class CatalogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto data = Synthesize(SmallSynth(kVideos, kUsers));
    ASSERT_TRUE(data.ok()) << data.status();
    columns_ =
        new Columns{data->manifest, std::move(data->videos), std::move(data->users)};
  }
  static void TearDownTestSuite() {
    delete columns_;
    columns_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(columns_, nullptr) << "test suite set-up failed"; }

  // A fresh copy: Create consumes its inputs.
  static Columns Copy() { return *columns_; }
  static const Columns& Original() { return *columns_; }

  static absl::StatusOr<std::unique_ptr<Catalog>> Create(
      Columns c, std::unique_ptr<AnnIndex> index = nullptr) {
    return Catalog::Create(c.manifest, std::move(c.videos), std::move(c.users),
                           std::move(index));
  }

 private:
  static Columns* columns_;
};

Columns* CatalogTest::columns_ = nullptr;

TEST_F(CatalogTest, CreateWithoutIndex) {
  auto catalog = Create(Copy());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Catalog& c = **catalog;
  EXPECT_FALSE(c.has_index());
  EXPECT_EQ(c.dim(), kDim);
  EXPECT_EQ(c.num_videos(), kVideos);
  EXPECT_EQ(c.num_users(), kUsers);
  const Columns& o = Original();
  for (int32_t row = 0; row < kVideos; ++row) {
    ASSERT_EQ(c.video_id(row), o.videos.ids[row]);
    ASSERT_EQ(c.creator_id(row), o.videos.creator_ids[row]);
    ASSERT_EQ(c.duration_ms(row), o.videos.duration_ms[row]);
    ASSERT_EQ(c.upload_time_ms(row), o.videos.upload_time_ms[row]);
    ASSERT_EQ(c.popularity(row), o.videos.popularity[row]);
    ASSERT_TRUE(std::equal(c.video_embedding(row), c.video_embedding(row) + kDim,
                           o.videos.embeddings.begin() + size_t(row) * kDim));
  }
  for (int32_t row = 0; row < kUsers; ++row) {
    ASSERT_EQ(c.user_id(row), o.users.ids[row]);
    ASSERT_EQ(c.user_activity(row), o.users.activity[row]);
    ASSERT_TRUE(std::equal(c.user_embedding(row), c.user_embedding(row) + kDim,
                           o.users.embeddings.begin() + size_t(row) * kDim));
  }
}

TEST_F(CatalogTest, CreateWithEachIndexType) {
  for (const char* type : {"flat", "ivf", "hnsw"}) {
    SCOPED_TRACE(type);
    Columns c = Copy();
    auto index = BuildIndex(type, c.videos.embeddings, kVideos);
    ASSERT_NE(index, nullptr);
    c.manifest.mutable_index()->set_type(type);
    auto catalog = Create(std::move(c), std::move(index));
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    ASSERT_TRUE((*catalog)->has_index());
    EXPECT_EQ((*catalog)->index().size(), kVideos);
    EXPECT_EQ((*catalog)->index().dim(), kDim);
    // Whichever copy of the vectors the catalog keeps, it holds the table.
    const std::vector<float>& x = Original().videos.embeddings;
    for (int32_t row = 0; row < kVideos; ++row) {
      ASSERT_TRUE(std::equal((*catalog)->video_embedding(row),
                             (*catalog)->video_embedding(row) + kDim,
                             x.begin() + size_t(row) * kDim))
          << "row " << row;
    }
  }
}

TEST_F(CatalogTest, RowLookups) {
  auto catalog = Create(Copy());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Catalog& c = **catalog;
  const Columns& o = Original();
  for (int32_t row = 0; row < kVideos; ++row) {
    ASSERT_EQ(c.VideoRow(o.videos.ids[row]), row);
  }
  for (int32_t row = 0; row < kUsers; ++row) {
    ASSERT_EQ(c.UserRow(o.users.ids[row]), row);
  }
  std::set<uint64_t> video_ids(o.videos.ids.begin(), o.videos.ids.end());
  std::set<uint64_t> user_ids(o.users.ids.begin(), o.users.ids.end());
  for (uint64_t id : {uint64_t{0}, o.videos.ids[0] + 1, o.videos.ids.back() + 1,
                      std::numeric_limits<uint64_t>::max(), o.users.ids[0]}) {
    if (video_ids.count(id) == 0) {
      EXPECT_EQ(c.VideoRow(id), std::nullopt) << id;
    }
  }
  for (uint64_t id : {uint64_t{0}, o.users.ids[0] + 1, o.videos.ids[0],
                      std::numeric_limits<uint64_t>::max()}) {
    if (user_ids.count(id) == 0) {
      EXPECT_EQ(c.UserRow(id), std::nullopt) << id;
    }
  }
  // Video and user ids are separate spaces.
  EXPECT_EQ(c.VideoRow(o.users.ids[0]), std::nullopt);
}

// The first min(n, kListLength) rows by `key` descending, ties by lower row.
template <typename T>
std::vector<int32_t> ReferenceTop(const std::vector<T>& key) {
  std::vector<int32_t> rows(key.size());
  std::iota(rows.begin(), rows.end(), 0);
  std::stable_sort(rows.begin(), rows.end(),
                   [&](int32_t a, int32_t b) { return key[a] > key[b]; });
  rows.resize(std::min<size_t>(rows.size(), Catalog::kListLength));
  return rows;
}

TEST_F(CatalogTest, PopularAndFreshLists) {
  auto catalog = Create(Copy());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Catalog& c = **catalog;
  const Columns& o = Original();
  const auto popular = c.popular_rows();
  const auto fresh = c.fresh_rows();
  ASSERT_EQ(popular.size(), size_t(Catalog::kListLength));
  ASSERT_EQ(fresh.size(), size_t(Catalog::kListLength));
  // The synthetic popularity has many ties, so this also checks tie order.
  EXPECT_EQ(std::vector<int32_t>(popular.begin(), popular.end()),
            ReferenceTop(o.videos.popularity));
  EXPECT_EQ(std::vector<int32_t>(fresh.begin(), fresh.end()),
            ReferenceTop(o.videos.upload_time_ms));
  for (size_t i = 1; i < popular.size(); ++i) {
    ASSERT_GE(c.popularity(popular[i - 1]), c.popularity(popular[i]));
    ASSERT_GE(c.upload_time_ms(fresh[i - 1]), c.upload_time_ms(fresh[i]));
  }
}

TEST_F(CatalogTest, ListTiesBreakByLowerVideoId) {
  // By id, not by row: the rule must give the same order to any part of the
  // catalogue (a shard, a delta), where rows differ.
  Columns c = Copy();
  std::fill(c.videos.popularity.begin(), c.videos.popularity.end(), 3.f);
  // Two groups of equal upload times; ids decrease with the row.
  for (int64_t row = 0; row < kVideos; ++row) {
    c.videos.upload_time_ms[row] = row % 2 == 0 ? 1000 : 2000;
    c.videos.ids[row] = 10 * uint64_t(kVideos - row);
  }
  auto catalog = Create(std::move(c));
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const auto popular = (*catalog)->popular_rows();
  const auto fresh = (*catalog)->fresh_rows();
  for (int32_t i = 0; i < Catalog::kListLength; ++i) {
    ASSERT_EQ(popular[i], kVideos - 1 - i);
    // The later group (odd rows), highest row (lowest id) first.
    ASSERT_EQ(fresh[i], kVideos - 1 - 2 * i);
  }
}

TEST_F(CatalogTest, ZeroVideoEmbeddingIsRefusedByRow) {
  Columns c = Copy();
  std::fill(c.videos.embeddings.begin() + 17 * kDim,
            c.videos.embeddings.begin() + 18 * kDim, 0.f);
  ExpectRefusal(Create(std::move(c)).status(), absl::StatusCode::kInvalidArgument,
                kVideoEmbeddingsFile, "row 17 is all zeros");
  // Users may have zero vectors (a user the log says nothing about).
  Columns u = Copy();
  std::fill(u.users.embeddings.begin(), u.users.embeddings.begin() + kDim, 0.f);
  EXPECT_TRUE(Create(std::move(u)).ok());
}

TEST_F(CatalogTest, StoredStatsGiveAShardTheWholeCataloguesCreatorValues) {
  auto whole = Create(Copy());
  ASSERT_TRUE(whole.ok());
  const CatalogStats stats = (*whole)->stats();
  // A shard: every third video of the whole, all the users.
  Columns part = Copy();
  VideoColumns& v = part.videos;
  VideoColumns kept;
  std::vector<int32_t> rows;
  for (int32_t row = 0; row < kVideos; row += 3) {
    rows.push_back(row);
    kept.ids.push_back(v.ids[row]);
    kept.embeddings.insert(kept.embeddings.end(), v.embeddings.begin() + row * kDim,
                           v.embeddings.begin() + (row + 1) * kDim);
    kept.creator_ids.push_back(v.creator_ids[row]);
    kept.duration_ms.push_back(v.duration_ms[row]);
    kept.upload_time_ms.push_back(v.upload_time_ms[row]);
    kept.popularity.push_back(v.popularity[row]);
  }
  part.manifest.set_num_videos(kept.ids.size());
  Columns derived_part = part;
  derived_part.videos = kept;
  auto derived = Create(std::move(derived_part));
  ASSERT_TRUE(derived.ok());
  auto shard = Catalog::Create(part.manifest, kept, part.users, nullptr, &stats);
  ASSERT_TRUE(shard.ok()) << shard.status();
  int differ = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ((*shard)->creator_videos(i), (*whole)->creator_videos(rows[i]));
    EXPECT_EQ((*shard)->creator_popularity(i), (*whole)->creator_popularity(rows[i]));
    differ += (*derived)->creator_videos(i) != (*whole)->creator_videos(rows[i]);
  }
  // Derived from its own rows, the shard would see other values.
  EXPECT_GT(differ, 0);
  for (int j = 0; j < kDim; ++j) {
    EXPECT_EQ((*shard)->mean_user_embedding()[j], (*whole)->mean_user_embedding()[j]);
  }
  // Stats that miss a creator of the shard's videos are refused.
  CatalogStats missing = stats;
  const auto it = std::find(missing.creator_ids.begin(), missing.creator_ids.end(),
                            kept.creator_ids[0]);
  ASSERT_NE(it, missing.creator_ids.end());
  *it = 1;
  auto refused = Catalog::Create(part.manifest, kept, part.users, nullptr, &missing);
  ExpectRefusal(refused.status(), absl::StatusCode::kInvalidArgument, kCatalogStatsDir,
                "has no entry for creator");
}

TEST_F(CatalogTest, ShortCatalogListsEveryVideo) {
  constexpr int64_t kFew = 10;
  Columns c = Copy();
  c.manifest.set_num_videos(kFew);
  c.videos.ids.resize(kFew);
  c.videos.embeddings.resize(kFew * kDim);
  c.videos.creator_ids.resize(kFew);
  c.videos.duration_ms.resize(kFew);
  c.videos.upload_time_ms.resize(kFew);
  c.videos.popularity.resize(kFew);
  std::vector<float> popularity = c.videos.popularity;
  std::vector<int64_t> upload = c.videos.upload_time_ms;
  auto catalog = Create(std::move(c));
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const auto popular = (*catalog)->popular_rows();
  const auto fresh = (*catalog)->fresh_rows();
  EXPECT_EQ(std::vector<int32_t>(popular.begin(), popular.end()),
            ReferenceTop(popularity));
  EXPECT_EQ(std::vector<int32_t>(fresh.begin(), fresh.end()), ReferenceTop(upload));
  EXPECT_EQ(popular.size(), size_t(kFew));
}

TEST_F(CatalogTest, CreatorCounts) {
  auto catalog = Create(Copy());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Catalog& c = **catalog;
  const Columns& o = Original();
  std::map<uint64_t, int> videos;
  std::map<uint64_t, double> popularity;
  for (int64_t row = 0; row < kVideos; ++row) {
    ++videos[o.videos.creator_ids[row]];
    popularity[o.videos.creator_ids[row]] += o.videos.popularity[row];
  }
  ASSERT_GT(videos.size(), 1u);
  EXPECT_EQ(c.num_creators(), static_cast<int32_t>(videos.size()));
  std::map<uint64_t, int32_t> index_of;
  for (int32_t row = 0; row < kVideos; ++row) {
    const uint64_t creator = o.videos.creator_ids[row];
    ASSERT_EQ(c.creator_videos(row), float(videos[creator])) << "row " << row;
    ASSERT_NEAR(c.creator_popularity(row), popularity[creator],
                1e-5 * popularity[creator])
        << "row " << row;
    const int32_t index = c.creator_index(row);
    ASSERT_GE(index, 0);
    ASSERT_LT(index, c.num_creators());
    // One dense number per creator, and different creators never share one.
    auto [it, inserted] = index_of.try_emplace(creator, index);
    ASSERT_EQ(it->second, index);
  }
  std::set<int32_t> distinct;
  for (const auto& [creator, index] : index_of) distinct.insert(index);
  EXPECT_EQ(distinct.size(), videos.size());
}

TEST_F(CatalogTest, MeanUserEmbedding) {
  auto catalog = Create(Copy());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const std::vector<float>& e = Original().users.embeddings;
  for (int j = 0; j < kDim; ++j) {
    double sum = 0;
    for (int64_t row = 0; row < kUsers; ++row) sum += e[row * kDim + j];
    EXPECT_NEAR((*catalog)->mean_user_embedding()[j], sum / kUsers, 1e-6) << j;
  }
}

TEST_F(CatalogTest, NoUsersGivesZeroMean) {
  Columns c = Copy();
  c.manifest.set_num_users(0);
  c.users = UserColumns();
  auto catalog = Create(std::move(c));
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_EQ((*catalog)->num_users(), 0);
  for (int j = 0; j < kDim; ++j) EXPECT_EQ((*catalog)->mean_user_embedding()[j], 0.f);
  EXPECT_EQ((*catalog)->UserRow(Original().users.ids[0]), std::nullopt);
}

struct BadColumns {
  std::string name;
  std::function<void(Columns*)> mutate;
  const char* file;
  std::string problem;
};

class CatalogRefusalTest : public CatalogTest,
                           public ::testing::WithParamInterface<BadColumns> {};

TEST_P(CatalogRefusalTest, CreateNamesTheColumn) {
  Columns c = Copy();
  GetParam().mutate(&c);
  auto catalog = Create(std::move(c));
  ExpectRefusal(catalog.status(), absl::StatusCode::kInvalidArgument,
                std::string(GetParam().file) + ": ", GetParam().problem);
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

INSTANTIATE_TEST_SUITE_P(
    AllColumns, CatalogRefusalTest,
    ::testing::Values(
        BadColumns{"DuplicateVideoId",
                   [](Columns* c) { c->videos.ids[5] = c->videos.ids[3]; }, kVideoIdsFile,
                   "appears at rows 3 and 5"},
        BadColumns{"DuplicateUserId",
                   [](Columns* c) { c->users.ids[199] = c->users.ids[0]; }, kUserIdsFile,
                   "appears at rows 0 and 199"},
        BadColumns{"VideoIdsShorterThanManifest",
                   [](Columns* c) { c->videos.ids.pop_back(); }, kVideoIdsFile,
                   "has 1999 entries, expected 2000"},
        BadColumns{"UserIdsLongerThanManifest",
                   [](Columns* c) { c->users.ids.push_back(1); }, kUserIdsFile,
                   "has 201 entries, expected 200"},
        BadColumns{"VideoEmbeddingsLength",
                   [](Columns* c) { c->videos.embeddings.resize(kVideos * kDim - 1); },
                   kVideoEmbeddingsFile, "expected 64000"},
        BadColumns{"UserEmbeddingsLength",
                   [](Columns* c) { c->users.embeddings.resize((kUsers + 1) * kDim); },
                   kUserEmbeddingsFile, "expected 6400"},
        BadColumns{"CreatorIdsLength",
                   [](Columns* c) { c->videos.creator_ids.pop_back(); },
                   kVideoCreatorIdsFile, "has 1999 entries"},
        BadColumns{"DurationLength",
                   [](Columns* c) { c->videos.duration_ms.push_back(0); },
                   kVideoDurationFile, "has 2001 entries"},
        BadColumns{"UploadTimeLength",
                   [](Columns* c) { c->videos.upload_time_ms.clear(); },
                   kVideoUploadTimeFile, "has 0 entries"},
        BadColumns{"PopularityLength",
                   [](Columns* c) { c->videos.popularity.pop_back(); },
                   kVideoPopularityFile, "has 1999 entries"},
        BadColumns{"ActivityLength", [](Columns* c) { c->users.activity.pop_back(); },
                   kUserActivityFile, "has 199 entries"},
        BadColumns{"NegativeDuration", [](Columns* c) { c->videos.duration_ms[17] = -1; },
                   kVideoDurationFile, "row 17 holds -1, expected a value >= 0"},
        BadColumns{"NegativeUploadTime",
                   [](Columns* c) { c->videos.upload_time_ms[3] = -5; },
                   kVideoUploadTimeFile, "row 3 holds -5"},
        BadColumns{"NegativePopularity",
                   [](Columns* c) { c->videos.popularity[1999] = -0.5f; },
                   kVideoPopularityFile, "row 1999 holds -0.5"},
        BadColumns{"NegativeActivity", [](Columns* c) { c->users.activity[2] = -3.f; },
                   kUserActivityFile, "row 2 holds -3"},
        BadColumns{"NanVideoEmbedding",
                   [](Columns* c) { c->videos.embeddings[10 * kDim + 3] = kNaN; },
                   kVideoEmbeddingsFile, "row 10 holds nan"},
        BadColumns{"InfUserEmbedding",
                   [](Columns* c) { c->users.embeddings[7 * kDim] = -kInf; },
                   kUserEmbeddingsFile, "row 7 holds -inf"},
        BadColumns{"NanPopularity", [](Columns* c) { c->videos.popularity[4] = kNaN; },
                   kVideoPopularityFile, "row 4 holds nan"},
        BadColumns{"InfActivity", [](Columns* c) { c->users.activity[0] = kInf; },
                   kUserActivityFile, "row 0 holds inf"}),
    [](const ::testing::TestParamInfo<BadColumns>& info) { return info.param.name; });

TEST_F(CatalogTest, ZeroDimIsRefused) {
  Columns c = Copy();
  c.manifest.set_dim(0);
  auto catalog = Create(std::move(c));
  EXPECT_EQ(catalog.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(catalog.status().message()), HasSubstr("dim"));
}

TEST_F(CatalogTest, IndexOfOtherEmbeddingsIsRefused) {
  for (const char* type : {"flat", "ivf", "hnsw"}) {
    SCOPED_TRACE(type);
    std::vector<float> other = Original().videos.embeddings;
    other[77 * kDim + 5] += 0.25f;
    auto index = BuildIndex(type, other, kVideos);
    ASSERT_NE(index, nullptr);
    auto catalog = Create(Copy(), std::move(index));
    ExpectRefusal(catalog.status(), absl::StatusCode::kInvalidArgument,
                  std::string(kIndexFile) + ": ", "row 77 differs");
  }
}

TEST_F(CatalogTest, IndexOfWrongSizeIsRefused) {
  const std::vector<float>& x = Original().videos.embeddings;
  auto index = BuildIndex("flat", x, kVideos - 1);
  ASSERT_NE(index, nullptr);
  auto catalog = Create(Copy(), std::move(index));
  ExpectRefusal(catalog.status(), absl::StatusCode::kInvalidArgument,
                std::string(kIndexFile) + ": ",
                "holds 1999 x 32 vectors, expected 2000 x 32");
}

// Catalog::Load on bundles written to disk.
class CatalogLoadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    WriteSmallBundle(SmallSynth(kVideos, kUsers), Bundle());
  }

  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(BundlePath(Bundle(), kManifestFile)))
        << "test suite set-up failed";
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string Bundle() { return dir_->Sub("bundle"); }
  // A bundle of 1500 videos, written on first use.
  static std::string Other() {
    const std::string dir = dir_->Sub("other");
    if (!std::filesystem::exists(dir)) WriteSmallBundle(SmallSynth(1500, kUsers), dir);
    return dir;
  }
  // Same sizes as Bundle(), other embeddings; written on first use.
  static std::string Reseeded() {
    const std::string dir = dir_->Sub("reseeded");
    if (!std::filesystem::exists(dir)) {
      SynthOptions reseeded = SmallSynth(kVideos, kUsers);
      reseeded.seed = 12;
      WriteSmallBundle(reseeded, dir);
    }
    return dir;
  }

  // A copy of Bundle() that the test may damage.
  std::string CopyOfBundle() {
    const std::string copy = scratch_.Sub("copy");
    CopyDir(Bundle(), copy);
    return copy;
  }

  static absl::StatusOr<std::unique_ptr<Catalog>> Load(const std::string& dir) {
    auto manifest = ReadManifest(dir);
    if (!manifest.ok()) return manifest.status();
    return Catalog::Load(dir, *manifest);
  }

  TempDir scratch_;

 private:
  static TempDir* dir_;
};

TempDir* CatalogLoadTest::dir_ = nullptr;

TEST_F(CatalogLoadTest, LoadsWrittenBundle) {
  auto catalog = Load(Bundle());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const Catalog& c = **catalog;
  EXPECT_TRUE(c.has_index());
  EXPECT_EQ(c.index().type(), AnnIndex::Type::kHnsw);
  EXPECT_EQ(c.num_videos(), kVideos);
  EXPECT_EQ(c.num_users(), kUsers);

  // Same options and seed: the files hold what Synthesize returns.
  auto data = Synthesize(SmallSynth(kVideos, kUsers));
  ASSERT_TRUE(data.ok()) << data.status();
  for (int32_t row = 0; row < kVideos; ++row) {
    ASSERT_EQ(c.video_id(row), data->videos.ids[row]);
    ASSERT_EQ(c.VideoRow(data->videos.ids[row]), row);
    ASSERT_TRUE(std::equal(c.video_embedding(row), c.video_embedding(row) + kDim,
                           data->videos.embeddings.begin() + size_t(row) * kDim));
  }
  for (int32_t row = 0; row < kUsers; ++row) {
    ASSERT_EQ(c.UserRow(data->users.ids[row]), row);
  }
  auto created = Catalog::Create(data->manifest, std::move(data->videos),
                                 std::move(data->users), nullptr);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(std::equal(c.popular_rows().begin(), c.popular_rows().end(),
                         (*created)->popular_rows().begin(),
                         (*created)->popular_rows().end()));
  EXPECT_TRUE(std::equal(c.fresh_rows().begin(), c.fresh_rows().end(),
                         (*created)->fresh_rows().begin(),
                         (*created)->fresh_rows().end()));
}

TEST_F(CatalogLoadTest, StoredCatalogStatsAreReadBack) {
  TempDir dir;
  CopyDir(Bundle(), dir.Sub("b"));
  auto plain = Load(dir.Sub("b"));
  ASSERT_TRUE(plain.ok());
  CatalogStats stats = (*plain)->stats();
  for (float& v : stats.creator_videos) v += 5;  // as if other shards held more
  stats.mean_user_embedding.assign(kDim, 0.5f);
  // Written as WriteBundle writes them for a shard.
  VideoColumns videos;
  UserColumns users;
  auto manifest = ReadManifest(dir.Sub("b"));
  ASSERT_TRUE(manifest.ok());
  ASSERT_TRUE(Catalog::ReadColumns(dir.Sub("b"), *manifest, &videos, &users).ok());
  TempDir out;
  ASSERT_TRUE(Catalog::WriteColumns(out.path(), kDim, videos, users, &stats).ok());
  CopyDir(BundlePath(out.path(), kCatalogStatsDir),
          BundlePath(dir.Sub("b"), kCatalogStatsDir));
  auto loaded = Load(dir.Sub("b"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (int32_t row = 0; row < 50; ++row) {
    EXPECT_EQ((*loaded)->creator_videos(row), (*plain)->creator_videos(row) + 5);
  }
  EXPECT_EQ((*loaded)->mean_user_embedding()[3], 0.5f);
  // A broken stats file is refused by name.
  WriteFile(BundlePath(BundlePath(dir.Sub("b"), kCatalogStatsDir), kCreatorVideosFile),
            "junk");
  EXPECT_THAT(std::string(Load(dir.Sub("b")).status().message()),
              HasSubstr(kCreatorVideosFile));
}

TEST_F(CatalogLoadTest, MissingVideoIdsIsNotFound) {
  const std::string dir = CopyOfBundle();
  ASSERT_TRUE(std::filesystem::remove(BundlePath(dir, kVideoIdsFile)));
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kNotFound,
                BundlePath(dir, kVideoIdsFile), "cannot open");
}

TEST_F(CatalogLoadTest, MissingIndexIsNotFound) {
  const std::string dir = CopyOfBundle();
  ASSERT_TRUE(std::filesystem::remove(BundlePath(dir, kIndexFile)));
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kNotFound,
                BundlePath(dir, kIndexFile), "cannot open");
}

TEST_F(CatalogLoadTest, UserEmbeddingsWithWrongColumnCountIsRefused) {
  const std::string dir = CopyOfBundle();
  ASSERT_TRUE(WriteNpy<float>(BundlePath(dir, kUserEmbeddingsFile),
                              std::vector<float>(kUsers * (kDim - 1), 0.5f),
                              {kUsers, kDim - 1})
                  .ok());
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument,
                BundlePath(dir, kUserEmbeddingsFile), "has 31 columns, expected dim 32");
}

TEST_F(CatalogLoadTest, UserEmbeddingsOfRankOneIsRefused) {
  const std::string dir = CopyOfBundle();
  ASSERT_TRUE(WriteNpy<float>(BundlePath(dir, kUserEmbeddingsFile),
                              std::vector<float>(kUsers * kDim, 0.5f), {kUsers * kDim})
                  .ok());
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument,
                BundlePath(dir, kUserEmbeddingsFile), "dimensions");
}

TEST_F(CatalogLoadTest, DuplicateVideoIdsAreRefused) {
  const std::string dir = CopyOfBundle();
  const std::string path = BundlePath(dir, kVideoIdsFile);
  auto ids = ReadNpy<uint64_t>(path, 1);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ids->data[1500] = ids->data[12];
  ASSERT_TRUE(WriteNpy<uint64_t>(path, ids->data, ids->shape).ok());
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument,
                BundlePath(dir, kVideoIdsFile), "appears at rows 12 and 1500");
}

TEST_F(CatalogLoadTest, NanPopularityFileIsRefused) {
  const std::string dir = CopyOfBundle();
  const std::string path = BundlePath(dir, kVideoPopularityFile);
  std::vector<float> popularity(kVideos, 1.f);
  popularity[42] = std::nanf("");
  ASSERT_TRUE(WriteNpy<float>(path, popularity, {kVideos}).ok());
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument, path,
                "NaN and Inf are not allowed");
}

TEST_F(CatalogLoadTest, TruncatedIndexIsRefused) {
  const std::string dir = CopyOfBundle();
  const std::string path = BundlePath(dir, kIndexFile);
  const std::string bytes = ReadFile(path);
  for (size_t keep :
       {size_t{0}, size_t{3}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    WriteFile(path, bytes.substr(0, keep));
    auto catalog = Load(dir);
    EXPECT_EQ(catalog.status().code(), absl::StatusCode::kInvalidArgument)
        << "kept " << keep << ": " << catalog.status();
    EXPECT_THAT(std::string(catalog.status().message()), HasSubstr(path));
  }
}

TEST_F(CatalogLoadTest, IndexFromBundleWithOtherVideoCountIsRefused) {
  const std::string dir = CopyOfBundle();
  WriteFile(BundlePath(dir, kIndexFile), ReadFile(BundlePath(Other(), kIndexFile)));
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument,
                BundlePath(dir, kIndexFile),
                "holds 1500 vectors but the bundle has 2000 videos");
}

TEST_F(CatalogLoadTest, IndexFromBundleWithOtherEmbeddingsIsRefused) {
  const std::string dir = CopyOfBundle();
  WriteFile(BundlePath(dir, kIndexFile), ReadFile(BundlePath(Reseeded(), kIndexFile)));
  ExpectRefusal(Load(dir).status(), absl::StatusCode::kInvalidArgument,
                BundlePath(dir, kIndexFile), "the index was built from other");
}

TEST_F(CatalogLoadTest, IndexOfOtherTypeThanManifestIsRefused) {
  const std::string dir = CopyOfBundle();
  auto manifest = ReadManifest(dir);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  manifest->mutable_index()->set_type("ivf");
  ExpectRefusal(Catalog::Load(dir, *manifest).status(),
                absl::StatusCode::kInvalidArgument, BundlePath(dir, kIndexFile),
                "different kind of FAISS index");
}

}  // namespace
}  // namespace feedrank
