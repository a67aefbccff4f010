#include "ranking/features.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "embeddings/catalog_view.h"
#include "ranking/bundle.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

// A two-video, one-user catalogue with hand-picked values.
std::unique_ptr<Catalog> TinyCatalog() {
  BundleManifest m;
  m.set_dim(2);
  m.set_num_videos(2);
  m.set_num_users(1);
  VideoColumns v;
  v.ids = {10, 11};
  v.embeddings = {3, 4, 1, 0};
  v.creator_ids = {7, 7};
  v.duration_ms = {30000, 0};
  v.upload_time_ms = {3600000, 10 * 3600000};
  v.popularity = {99, 0};
  UserColumns u;
  u.ids = {5};
  u.embeddings = {1, 2};
  u.activity = {9};
  auto catalog = Catalog::Create(m, std::move(v), std::move(u), nullptr);
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  return *std::move(catalog);
}

TEST(FeatureSetTest, EveryGroupHasTheDocumentedValue) {
  auto catalog = TinyCatalog();
  auto set = FeatureSet::Create(FeatureSet::AllGroups(), 2);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->width(), 12 + 2 + 4 + 2 + 6 + 3);
  EXPECT_EQ(set->ColumnNames().size(), size_t(set->width()));
  UserQuery user{catalog->user_embedding(0), true, catalog->user_activity(0)};
  FeatureContext context;
  context.now_ms = 10 * 3600000 + 6 * 3600000;  // 16:00 UTC on day 0
  context.utc_offset_minutes = -4 * 60;         // 12:00 local
  context.device = DeviceType::kIos;
  const int32_t rows[2] = {0, 1};
  std::vector<float> x(2 * set->width());
  set->Build(*catalog, user, context, rows, x.data());
  const std::vector<std::string> names = set->ColumnNames();
  auto at = [&](int row, const std::string& name) {
    const int col = std::find(names.begin(), names.end(), name) - names.begin();
    return x[row * set->width() + col];
  };
  EXPECT_FLOAT_EQ(at(0, "dot"), 11.f);
  EXPECT_FLOAT_EQ(at(0, "cosine"), 11.f / (5.f * std::sqrt(5.f)));
  EXPECT_FLOAT_EQ(at(0, "video_norm"), 5.f);
  EXPECT_FLOAT_EQ(at(0, "user_norm"), std::sqrt(5.f));
  EXPECT_FLOAT_EQ(at(0, "log_popularity"), std::log1p(99.f));
  EXPECT_FLOAT_EQ(at(0, "log_age_hours"), std::log1p(15.f));
  EXPECT_FLOAT_EQ(at(1, "log_age_hours"), std::log1p(6.f));
  EXPECT_FLOAT_EQ(at(0, "log_duration"), std::log1p(30.f));
  EXPECT_FLOAT_EQ(at(0, "duration_unknown"), 0.f);
  EXPECT_FLOAT_EQ(at(1, "duration_unknown"), 1.f);
  EXPECT_FLOAT_EQ(at(1, "log_duration"), 0.f);
  EXPECT_FLOAT_EQ(at(0, "log_creator_videos"), std::log1p(2.f));
  EXPECT_FLOAT_EQ(at(0, "log_creator_popularity"), std::log1p(99.f));
  EXPECT_FLOAT_EQ(at(0, "user_known"), 1.f);
  EXPECT_FLOAT_EQ(at(0, "log_user_activity"), std::log1p(9.f));
  EXPECT_NEAR(at(0, "hour_of_day[0]"), 0.f, 1e-6);   // sin(pi) at noon
  EXPECT_NEAR(at(0, "hour_of_day[1]"), -1.f, 1e-6);  // cos(pi)
  EXPECT_FLOAT_EQ(at(0, "device[2]"), 1.f);
  EXPECT_FLOAT_EQ(at(0, "device[0]") + at(0, "device[1]") + at(0, "device[3]"), 0.f);
  EXPECT_FLOAT_EQ(at(0, "product[0]"), 3.f);
  EXPECT_FLOAT_EQ(at(0, "product[1]"), 8.f);
  EXPECT_FLOAT_EQ(at(1, "dot"), 1.f);
}

// A bundle's FeatureSet reads base rows from its precomputed table
// (AttachCatalog); the values must be the same bits as computing them, for
// base rows and for a live view's delta rows alike.
TEST(FeatureSetTest, ThePrecomputedTableGivesTheSameBits) {
  std::shared_ptr<const Bundle> bundle =
      testing::MakeSmallBundle(testing::SmallSynth(3000, 50));
  const Catalog& catalog = *bundle->catalog;
  std::vector<std::string> groups(bundle->manifest.model().features().begin(),
                                  bundle->manifest.model().features().end());
  for (const std::string& g : FeatureSet::AllGroups()) {
    if (std::find(groups.begin(), groups.end(), g) == groups.end() && g != "trending" &&
        g != "history") {
      groups.push_back(g);
    }
  }
  auto plain = FeatureSet::Create(groups, catalog.dim());
  ASSERT_TRUE(plain.ok()) << plain.status();
  FeatureSet attached = *plain;
  attached.AttachCatalog(catalog);
  // A delta video, so the view has rows the table does not cover.
  VideoColumns fresh;
  fresh.ids = {987654321};
  fresh.embeddings.assign(catalog.video_embedding(5),
                          catalog.video_embedding(5) + catalog.dim());
  fresh.creator_ids = {catalog.creator_id(5)};
  fresh.duration_ms = {0};
  fresh.upload_time_ms = {catalog.upload_time_ms(5) + 1000};
  fresh.popularity = {12.5f};
  auto delta = CatalogDelta::Create(catalog, fresh);
  ASSERT_TRUE(delta.ok()) << delta.status();
  auto view = CatalogView::Create(bundle->catalog, *delta, nullptr, 1);
  ASSERT_TRUE(view.ok()) << view.status();
  std::vector<int32_t> rows;
  for (int32_t r = 0; r < catalog.num_videos(); r += 7) rows.push_back(r);
  rows.push_back((*view)->num_rows() - 1);  // the delta row
  const UserQuery user = LookUpUser(**view, catalog.user_id(3));
  FeatureContext context;
  context.now_ms = catalog.upload_time_ms(0) + 3600000;
  std::vector<float> a(rows.size() * plain->width()), b(a.size());
  plain->Build(**view, user, context, rows, a.data());
  attached.Build(**view, user, context, rows, b.data());
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // And the bundle's own set, attached at load (the serving path).
  std::vector<float> c(bundle->features.width() * rows.size());
  auto own = FeatureSet::Create(
      std::vector<std::string>(bundle->manifest.model().features().begin(),
                               bundle->manifest.model().features().end()),
      catalog.dim());
  ASSERT_TRUE(own.ok());
  own->Build(**view, user, context, rows, c.data());
  bundle->features.Build(**view, user, context, rows, b.data());
  EXPECT_EQ(std::memcmp(c.data(), b.data(), c.size() * sizeof(float)), 0);
}

TEST(FeatureSetTest, TrendingAndHistoryHaveTheDocumentedValues) {
  auto catalog = TinyCatalog();
  auto set = FeatureSet::Create({"trending", "history"}, 2);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE(set->uses_engagement());
  EXPECT_EQ(set->width(), 9);
  constexpr int64_t kHour = 3600000;
  const int64_t now = 16 * kHour;
  EngagementState state(*catalog, 0);
  // Video 10: a like an hour ago and a plain view six hours ago, both by
  // user 5; an event at `now` itself is not before the request.
  state.Record({{5, 10, now - kHour, true}, {5, 10, now - 6 * kHour, false}});
  state.Record({{6, 10, now, true}});
  UserQuery user{catalog->user_embedding(0), true, catalog->user_activity(0)};
  std::vector<float> history;
  AddHistory(CatalogView::Borrow(*catalog), &state, 5, now, &user, &history);
  ASSERT_EQ(user.history_count, 2);
  FeatureContext context;
  context.now_ms = now;
  const int32_t rows[2] = {0, 1};
  float x[18];
  set->Build(*catalog, user, context, &state, rows, x);
  const double half_lives[3] = {1, 6, 24};
  for (int k = 0; k < 3; ++k) {
    const double h = half_lives[k];
    // The event at `now` counts fully (the caller records what is before).
    const double views = std::exp2(-1 / h) + std::exp2(-6 / h) + 1;
    const double likes = std::exp2(-1 / h) + 1;
    EXPECT_NEAR(x[k], std::log1p(views), 1e-5) << k;
    EXPECT_NEAR(x[3 + k], std::log1p(likes), 1e-5) << k;
    EXPECT_EQ(x[9 + k], 0.f);  // video 11: no event
    EXPECT_EQ(x[9 + 3 + k], 0.f);
  }
  // History: both events are video 10 (3, 4), so its mean is (3, 4).
  EXPECT_FLOAT_EQ(x[6], 25.f);
  EXPECT_FLOAT_EQ(x[7], 1.f);
  EXPECT_FLOAT_EQ(x[8], std::log1p(2.f));
  EXPECT_FLOAT_EQ(x[9 + 6], 3.f);  // (3, 4) . (1, 0)
  EXPECT_FLOAT_EQ(x[9 + 7], 3.f / 5.f);
  // Without a history or a state: zeros.
  UserQuery fresh{catalog->user_embedding(0), true, 0};
  set->Build(*catalog, fresh, context, nullptr, rows, x);
  for (float v : x) EXPECT_EQ(v, 0.f);
}

TEST(FeatureSetTest, OrderFollowsTheManifest) {
  auto catalog = TinyCatalog();
  auto set = FeatureSet::Create({"user_known", "dot"}, 2);
  ASSERT_TRUE(set.ok());
  UserQuery cold{catalog->mean_user_embedding(), false, 0};
  const int32_t row[1] = {0};
  float x[2];
  set->Build(*catalog, cold, FeatureContext(), row, x);
  EXPECT_EQ(x[0], 0.f);
  EXPECT_FLOAT_EQ(x[1], 11.f);  // the mean of one user is that user
}

TEST(FeatureSetTest, FutureUploadsHaveAgeZero) {
  auto catalog = TinyCatalog();
  auto set = FeatureSet::Create({"log_age_hours"}, 2);
  ASSERT_TRUE(set.ok());
  UserQuery user{catalog->user_embedding(0), true, 0};
  FeatureContext context;
  context.now_ms = 0;
  const int32_t row[1] = {1};
  float x;
  set->Build(*catalog, user, context, row, &x);
  EXPECT_EQ(x, 0.f);
}

TEST(FeatureSetTest, RefusesUnknownAndRepeatedGroups) {
  auto unknown = FeatureSet::Create({"dot", "watch_time"}, 8);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("watch_time"));
  auto twice = FeatureSet::Create({"dot", "dot"}, 8);
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("twice"));
  EXPECT_FALSE(FeatureSet::Create({}, 8).ok());
}

}  // namespace
}  // namespace feedrank
