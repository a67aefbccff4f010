#include "ranking/engagement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "base/npy.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kHour = 3600000;

// Videos 10, 11, 12 (embeddings (1,0), (0,1), (1,1)); users 5, 6.
std::unique_ptr<Catalog> SmallCatalog() {
  BundleManifest m;
  m.set_dim(2);
  m.set_num_videos(3);
  m.set_num_users(2);
  VideoColumns v;
  v.ids = {10, 11, 12};
  v.embeddings = {1, 0, 0, 1, 1, 1};
  v.creator_ids = {1, 2, 3};
  v.duration_ms = {0, 0, 0};
  v.upload_time_ms = {0, 0, 0};
  v.popularity = {0, 0, 0};
  UserColumns u;
  u.ids = {5, 6};
  u.embeddings = {1, 0, 0, 1};
  u.activity = {1, 1};
  auto catalog = Catalog::Create(m, std::move(v), std::move(u), nullptr);
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  return *std::move(catalog);
}

std::vector<float> CountsOf(const EngagementState& state, uint64_t video, int64_t now) {
  std::vector<float> out(kTrendColumns);
  EngagementState::Reader(&state, now).TrendingOf(video, out.data());
  return out;
}

// The closed form: the sum over events of 2^-((now - t) / h).
double Expected(const std::vector<int64_t>& times, int64_t now, double hours) {
  double sum = 0;
  for (int64_t t : times) sum += std::exp2(-double(now - t) / (hours * kHour));
  return sum;
}

TEST(EngagementStateTest, CountsAreTheDecayedSumsAcrossRebases) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  // Events over ten days (several rebases at 48 h), shuffled.
  std::vector<int64_t> times, liked;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 400; ++i) times.push_back(int64_t(rng() % (240 * kHour)));
  std::vector<EngagementEvent> events;
  for (size_t i = 0; i < times.size(); ++i) {
    const bool positive = i % 3 == 0;
    if (positive) liked.push_back(times[i]);
    events.push_back({5, 11, times[i], positive});
  }
  for (size_t i = 0; i < events.size(); i += 37) {
    state.Record(absl::MakeSpan(events).subspan(i, 37));
  }
  EXPECT_EQ(state.recorded(), 400);
  const int64_t now = 241 * kHour;
  const std::vector<float> c = CountsOf(state, 11, now);
  for (int k = 0; k < kTrendWindows; ++k) {
    const double views = Expected(times, now, kTrendHalfLifeHours[k]);
    const double likes = Expected(liked, now, kTrendHalfLifeHours[k]);
    EXPECT_NEAR(c[k], views, 1e-4 * views + 1e-6) << k;
    EXPECT_NEAR(c[kTrendWindows + k], likes, 1e-4 * likes + 1e-6) << k;
  }
  EXPECT_THAT(CountsOf(state, 10, now), ElementsAre(0, 0, 0, 0, 0, 0));
  // An id outside the catalogue (a live upload) gets a slot of its own.
  state.Record({{6, 99, now - kHour, true}});
  EXPECT_EQ(state.extra_videos(), 1);
  EXPECT_NEAR(CountsOf(state, 99, now)[0], 0.5, 1e-6);
}

TEST(EngagementStateTest, CountsStayFiniteReadLongBeforeTheirEvents) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  // Ten days of likes, read at time 0: every weight is far above 1, the
  // sums overflow float, and the reads must stay finite (never inf or NaN).
  std::vector<EngagementEvent> events;
  for (int h = 0; h < 240; ++h) events.push_back({5, 10, h * kHour, true});
  state.Record(events);
  for (int64_t at : {int64_t{0}, 240 * kHour, int64_t{1} << 40}) {
    const std::vector<float> c = CountsOf(state, 10, at);
    for (float x : c) EXPECT_TRUE(std::isfinite(x)) << at;
  }
  testing::TempDir dir;
  ASSERT_TRUE(state.Write(dir.path(), {10, 11, 12}, {5, 6}, 0, *FileSystem::Real()).ok());
  // The file holds finite values (ReadNpy refuses inf), so it loads.
  EXPECT_TRUE(EngagementState::Load(dir.path(), *catalog, 0, *FileSystem::Real()).ok());
}

TEST(EngagementStateTest, HistoryKeepsTheMostRecentStrictlyBeforeNow) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  std::vector<EngagementEvent> events;
  for (int i = 0; i < kHistoryLength + 5; ++i) {
    events.push_back({5, uint64_t(1000 + i), int64_t(i + 1) * kHour, false});
  }
  std::shuffle(events.begin(), events.end(), std::mt19937_64(1));
  state.Record(events);
  const int last = kHistoryLength + 5;  // hours of the newest event
  std::vector<uint64_t> h =
      EngagementState::Reader(&state, (last + 1) * kHour).History(5);
  ASSERT_EQ(h.size(), size_t(kHistoryLength));
  for (int i = 0; i < kHistoryLength; ++i) EXPECT_EQ(h[i], uint64_t(1000 + last - 1 - i));
  // At the time of the newest event it is not "before" yet.
  h = EngagementState::Reader(&state, last * kHour).History(5);
  ASSERT_EQ(h.size(), size_t(kHistoryLength - 1));
  EXPECT_EQ(h[0], uint64_t(1000 + last - 2));
  EXPECT_TRUE(EngagementState::Reader(&state, kHour).History(5).empty());
  EXPECT_TRUE(EngagementState::Reader(&state, int64_t{1} << 40).History(6).empty());
  EXPECT_TRUE(EngagementState::Reader(nullptr, int64_t{1} << 40).History(5).empty());
}

TEST(EngagementStateTest, HistoryMeanIsRecencyWeightedOverKnownVideos) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  // Newest first: 10 (1,0), an unknown video, 11 (0,1).
  state.Record(
      {{5, 11, 1 * kHour, true}, {5, 777, 2 * kHour, true}, {5, 10, 3 * kHour, false}});
  float mean[2];
  const CatalogView view = CatalogView::Borrow(*catalog);
  EXPECT_EQ(EngagementState::Reader(&state, 4 * kHour).HistoryMean(view, 5, mean), 2);
  // Weights 1 (10), 0.9 (777, skipped), 0.81 (11).
  EXPECT_FLOAT_EQ(mean[0], 1.f / 1.81f);
  EXPECT_FLOAT_EQ(mean[1], 0.81f / 1.81f);
  EXPECT_EQ(EngagementState::Reader(&state, 4 * kHour).HistoryMean(view, 6, mean), 0);
  EXPECT_EQ(mean[0], 0.f);
}

TEST(EngagementStateTest, WriteThenLoadKeepsCountsAndHistoryByIdInAnotherCatalogue) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  state.Record({{5, 10, 1 * kHour, true},
                {6, 12, 2 * kHour, false},
                {6, 10, 3 * kHour, true},
                {7, 12, 4 * kHour, true}});
  testing::TempDir dir;
  // The other catalogue lists videos 12, 10 and a new one, users 6 and 5.
  const std::vector<uint64_t> videos = {12, 10, 55};
  const std::vector<uint64_t> users = {6, 5};
  ASSERT_TRUE(
      state.Write(dir.path(), videos, users, 10 * kHour, *FileSystem::Real()).ok());
  auto trending = ReadNpy<float>(dir.Sub(kTrendingFile), 2);
  ASSERT_TRUE(trending.ok());
  EXPECT_THAT(trending->shape, ElementsAre(3, kTrendColumns));
  // Loaded over a catalogue with those rows.
  BundleManifest m;
  m.set_dim(2);
  m.set_num_videos(3);
  m.set_num_users(2);
  VideoColumns v;
  v.ids = videos;
  v.embeddings = {1, 1, 1, 0, 2, 2};
  v.creator_ids = {1, 2, 3};
  v.duration_ms = v.upload_time_ms = {0, 0, 0};
  v.popularity = {0, 0, 0};
  UserColumns u;
  u.ids = users;
  u.embeddings = {1, 0, 0, 1};
  u.activity = {1, 1};
  auto other = Catalog::Create(m, std::move(v), std::move(u), nullptr);
  ASSERT_TRUE(other.ok());
  auto loaded =
      EngagementState::Load(dir.path(), **other, 10 * kHour, *FileSystem::Real());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (uint64_t id : {10, 12, 55}) {
    const std::vector<float> a = CountsOf(state, id, 12 * kHour);
    const std::vector<float> b = CountsOf(**loaded, id, 12 * kHour);
    for (int c = 0; c < kTrendColumns; ++c) EXPECT_NEAR(a[c], b[c], 1e-6) << id;
  }
  EXPECT_THAT(EngagementState::Reader(loaded->get(), 12 * kHour).History(6),
              ElementsAre(10, 12));
  EXPECT_THAT(EngagementState::Reader(loaded->get(), 12 * kHour).History(5),
              ElementsAre(10));
  // User 7 is not in the other catalogue: not carried.
  EXPECT_TRUE(EngagementState::Reader(loaded->get(), 12 * kHour).History(7).empty());
  // A directory without the files: an empty state.
  testing::TempDir empty;
  auto none = EngagementState::Load(empty.path(), **other, 0, *FileSystem::Real());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(EngagementState::InBundle(empty.path(), *FileSystem::Real()));
  EXPECT_THAT(CountsOf(**none, 10, 0), ElementsAre(0, 0, 0, 0, 0, 0));
}

TEST(EngagementStateTest, BadFilesAreRefusedNamingTheFile) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  testing::TempDir dir;
  FileSystem& fs = *FileSystem::Real();
  ASSERT_TRUE(state.Write(dir.path(), {10, 11, 12}, {5, 6}, 0, fs).ok());
  ASSERT_TRUE(EngagementState::Load(dir.path(), *catalog, 0, fs).ok());
  // Only some of the three.
  std::filesystem::remove(dir.Sub(kHistoryTimesFile));
  auto partial = EngagementState::Load(dir.path(), *catalog, 0, fs);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(partial.status().message()), HasSubstr("all three or none"));
  ASSERT_TRUE(state.Write(dir.path(), {10, 11, 12}, {5, 6}, 0, fs).ok());
  // Another number of videos.
  ASSERT_TRUE(
      WriteNpy<float>(fs, dir.Sub(kTrendingFile), std::vector<float>(12, 0.f), {2, 6})
          .ok());
  auto shape = EngagementState::Load(dir.path(), *catalog, 0, fs);
  EXPECT_THAT(std::string(shape.status().message()),
              HasSubstr("trending.npy: shape [2, 6], expected [3, 6]"));
  // A negative count.
  std::vector<float> negative(18, 0.f);
  negative[7] = -1;
  ASSERT_TRUE(WriteNpy<float>(fs, dir.Sub(kTrendingFile), negative, {3, 6}).ok());
  auto bad = EngagementState::Load(dir.path(), *catalog, 0, fs);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("row 1 column 1 is negative"));
  // History of the wrong width.
  ASSERT_TRUE(
      WriteNpy<float>(fs, dir.Sub(kTrendingFile), std::vector<float>(18, 0.f), {3, 6})
          .ok());
  ASSERT_TRUE(
      WriteNpy<int64_t>(fs, dir.Sub(kHistoryIdsFile), std::vector<int64_t>(4, -1), {2, 2})
          .ok());
  auto width = EngagementState::Load(dir.path(), *catalog, 0, fs);
  EXPECT_THAT(std::string(width.status().message()), HasSubstr("history_ids.npy: shape"));
}

TEST(EngagementStateTest, LoggedRecordsAreRecordedOnceAndClonesAreIndependent) {
  auto catalog = SmallCatalog();
  EngagementState state(*catalog, 0);
  EXPECT_TRUE(state.RecordLogged(3, {{5, 10, kHour, true}}));
  EXPECT_FALSE(state.RecordLogged(3, {{5, 10, kHour, true}}));
  EXPECT_FALSE(state.RecordLogged(2, {{5, 10, kHour, true}}));
  EXPECT_EQ(state.logged_sequence(), 3u);
  EXPECT_EQ(state.recorded(), 1);
  std::unique_ptr<EngagementState> copy = state.Clone();
  state.Record({{5, 10, 2 * kHour, true}});
  EXPECT_EQ(copy->recorded(), 1);
  EXPECT_EQ(copy->logged_sequence(), 3u);
  EXPECT_NEAR(CountsOf(*copy, 10, 2 * kHour)[0], 0.5, 1e-6);
  EXPECT_NEAR(CountsOf(state, 10, 2 * kHour)[0], 1.5, 1e-6);
}

TEST(EngagementStateTest, TheTrendingListIsExactlyTheTopByRecentLikes) {
  // 1,500 videos, more than the list holds.
  constexpr int kVideos = 1500;
  BundleManifest m;
  m.set_dim(1);
  m.set_num_videos(kVideos);
  m.set_num_users(0);
  VideoColumns v;
  for (int i = 0; i < kVideos; ++i) {
    v.ids.push_back(uint64_t(100 + i));
    v.embeddings.push_back(1);
    v.creator_ids.push_back(1);
    v.duration_ms.push_back(0);
    v.upload_time_ms.push_back(0);
    v.popularity.push_back(0);
  }
  auto catalog = Catalog::Create(m, std::move(v), UserColumns(), nullptr);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EngagementState state(**catalog, 0);
  std::mt19937_64 rng(5);
  // Likes and views over ten days (rebases included), in batches; a few
  // likes of a live upload outside the catalogue.
  for (int batch = 0; batch < 200; ++batch) {
    std::vector<EngagementEvent> events;
    for (int i = 0; i < 100; ++i) {
      const uint64_t video = rng() % 50 == 0 ? 99999 : 100 + rng() % kVideos;
      events.push_back({rng() % 50, video,
                        int64_t(batch) * 72 * 60000 + int64_t(rng() % 60000),
                        rng() % 3 != 0});
    }
    state.Record(events);
  }
  const CatalogView view = CatalogView::Borrow(**catalog);
  auto check = [&](const EngagementState& s) {
    const int64_t now = 240 * kHour;
    EngagementState::Reader reader(&s, now);
    std::vector<float> listed;
    std::set<int32_t> rows;
    reader.ForEachTrending(view, [&](int32_t row) {
      float c[kTrendColumns];
      reader.Trending(view, row, c);
      listed.push_back(c[kTrendingColumn]);
      rows.insert(row);
      return true;
    });
    ASSERT_GE(listed.size(), size_t(kTrendingTop - 1));  // less the upload
    EXPECT_TRUE(std::is_sorted(listed.rbegin(), listed.rend()));
    // Nothing outside the list has more.
    for (int32_t row = 0; row < kVideos; ++row) {
      if (rows.count(row)) continue;
      float c[kTrendColumns];
      reader.Trending(view, row, c);
      EXPECT_LE(c[kTrendingColumn], listed.back() * (1 + 1e-5f)) << row;
    }
  };
  check(state);
  check(*state.Clone());
  // Written and loaded: the same list (the upload outside the catalogue is
  // not carried).
  testing::TempDir dir;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kVideos; ++i) ids.push_back(uint64_t(100 + i));
  ASSERT_TRUE(state.Write(dir.path(), ids, {}, 240 * kHour, *FileSystem::Real()).ok());
  auto loaded =
      EngagementState::Load(dir.path(), **catalog, 240 * kHour, *FileSystem::Real());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  check(**loaded);
}

}  // namespace
}  // namespace feedrank
