#include "embeddings/catalog_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "base/simd.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

constexpr int kDim = 32;

class CatalogViewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto data = Synthesize(testing::SmallSynth(3000, 100));
    ASSERT_TRUE(data.ok());
    IndexSpec spec;
    spec.set_type("hnsw");
    spec.set_hnsw_m(16);
    auto index =
        AnnIndex::Build(data->videos.embeddings.data(), 3000, kDim, &spec, nullptr, 1);
    ASSERT_TRUE(index.ok());
    *data->manifest.mutable_index() = spec;
    users_ = new UserColumns(data->users);
    auto catalog =
        Catalog::Create(data->manifest, data->videos, data->users, *std::move(index));
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    base_ = new std::shared_ptr<const Catalog>(*std::move(catalog));
  }
  static void TearDownTestSuite() {
    delete base_;
    delete users_;
  }
  const Catalog& base() const { return **base_; }

  // `n` new videos pointing where user `u` looks, so ANN must find them.
  VideoColumns NewVideos(int n, int u, uint64_t first_id) const {
    VideoColumns v;
    const float* e = base().user_embedding(u);
    for (int i = 0; i < n; ++i) {
      v.ids.push_back(first_id + i);
      for (int j = 0; j < kDim; ++j) v.embeddings.push_back(e[j] * (3.f + i));
      v.creator_ids.push_back(i == 0 ? base().creator_id(0) : 777000 + i);
      v.duration_ms.push_back(15000);
      v.upload_time_ms.push_back(1793491200000 + i);  // newer than any base video
      v.popularity.push_back(1e9f - i);               // more popular than any
    }
    return v;
  }

  static std::shared_ptr<const Catalog>* base_;
  static UserColumns* users_;
};
std::shared_ptr<const Catalog>* CatalogViewTest::base_ = nullptr;
UserColumns* CatalogViewTest::users_ = nullptr;

TEST_F(CatalogViewTest, BaseViewIsTheCatalogue) {
  auto view = CatalogView::Of(*base_, 3);
  EXPECT_EQ(view->version(), 3u);
  EXPECT_EQ(view->num_rows(), 3000);
  EXPECT_EQ(view->num_live_videos(), 3000);
  EXPECT_EQ(view->VideoRow(base().video_id(42)), 42);
  SearchScratch scratch;
  std::vector<Hit> a, b;
  view->Search(base().user_embedding(0), SearchOptions{50, 0, 0}, RowPredicate(),
               &scratch, &a);
  base().index().Search(base().user_embedding(0), SearchOptions{50, 0, 0}, RowPredicate(),
                        &scratch, &b);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].row, b[i].row);
}

TEST_F(CatalogViewTest, DeltaVideosAreSearchedListedAndLookedUp) {
  auto delta = CatalogDelta::Create(base(), NewVideos(3, 5, 9000000001));
  ASSERT_TRUE(delta.ok()) << delta.status();
  auto view = CatalogView::Create(*base_, *delta, nullptr, 1);
  ASSERT_TRUE(view.ok()) << view.status();
  const CatalogView& v = **view;
  EXPECT_EQ(v.num_rows(), 3003);
  const int32_t row = *v.VideoRow(9000000002);
  EXPECT_TRUE(v.in_delta(row));
  EXPECT_EQ(v.video_id(row), 9000000002u);
  EXPECT_EQ(v.creator_id(row), 777001u);
  // The delta video of a known creator takes the base's creator statistics;
  // one of a new creator counts itself.
  EXPECT_EQ(v.creator_videos(*v.VideoRow(9000000001)), base().creator_videos(0));
  EXPECT_EQ(v.creator_videos(row), 1.f);
  EXPECT_EQ(v.creator_popularity(row), 1e9f - 1);
  // Merged into the ANN results by score: the three point at user 5.
  SearchScratch scratch;
  std::vector<Hit> hits;
  v.Search(base().user_embedding(5), SearchOptions{20, 0, 0}, RowPredicate(), &scratch,
           &hits);
  ASSERT_EQ(hits.size(), 20u);
  std::set<int32_t> top3 = {hits[0].row, hits[1].row, hits[2].row};
  EXPECT_EQ(top3, (std::set<int32_t>{3000, 3001, 3002}));
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_TRUE(BetterHit(hits[i - 1], hits[i]));
  // First in the popular and fresh lists (most popular, newest).
  std::vector<int32_t> popular, fresh;
  v.ForEachListed(CatalogView::List::kPopular, [&](int32_t r) {
    popular.push_back(r);
    return popular.size() < 5;
  });
  v.ForEachListed(CatalogView::List::kFresh, [&](int32_t r) {
    fresh.push_back(r);
    return fresh.size() < 5;
  });
  EXPECT_THAT(popular, ::testing::ElementsAre(3000, 3001, 3002, base().popular_rows()[0],
                                              base().popular_rows()[1]));
  EXPECT_THAT(fresh, ::testing::ElementsAre(3002, 3001, 3000, base().fresh_rows()[0],
                                            base().fresh_rows()[1]));
}

TEST_F(CatalogViewTest, TombstonedRowsAreReturnedByNoSource) {
  // Delete the top 30 ANN results of user 7, the 10 most popular and the
  // 10 freshest videos, and replace one video by a delta version.
  SearchScratch scratch;
  std::vector<Hit> hits;
  base().index().Search(base().user_embedding(7), SearchOptions{30, 0, 0}, RowPredicate(),
                        &scratch, &hits);
  auto tombstones = std::make_shared<RowBitmap>(base().num_videos());
  std::set<uint64_t> deleted;
  auto kill = [&](int32_t row) {
    tombstones->Insert(row);
    deleted.insert(base().video_id(row));
  };
  for (const Hit& h : hits) kill(h.row);
  for (int i = 0; i < 10; ++i) kill(base().popular_rows()[i]);
  for (int i = 0; i < 10; ++i) kill(base().fresh_rows()[i]);
  const int32_t replaced = base().popular_rows()[20];
  const uint64_t replaced_id = base().video_id(replaced);
  tombstones->Insert(replaced);
  VideoColumns update = NewVideos(1, 9, replaced_id);
  auto delta = CatalogDelta::Create(base(), update);
  ASSERT_TRUE(delta.ok());
  auto view = CatalogView::Create(*base_, *delta, tombstones, 2);
  ASSERT_TRUE(view.ok()) << view.status();
  const CatalogView& v = **view;
  EXPECT_EQ(v.num_live_videos(), 3000 - int32_t(deleted.size()) - 1 + 1);
  for (uint64_t id : deleted) EXPECT_FALSE(v.VideoRow(id).has_value()) << id;
  // The replaced id now names its delta row.
  EXPECT_EQ(v.VideoRow(replaced_id), 3000);
  for (int u = 0; u < 20; ++u) {
    for (int k : {30, 500}) {
      v.Search(base().user_embedding(u), SearchOptions{k, 0, 0}, RowPredicate(), &scratch,
               &hits);
      EXPECT_EQ(hits.size(), size_t(k));
      for (const Hit& h : hits) {
        ASSERT_TRUE(v.live(h.row)) << "user " << u;
        ASSERT_NE(h.row, replaced);
      }
    }
  }
  for (auto list : {CatalogView::List::kPopular, CatalogView::List::kFresh}) {
    int seen = 0;
    v.ForEachListed(list, [&](int32_t r) {
      EXPECT_TRUE(v.live(r));
      EXPECT_NE(r, replaced);
      return ++seen < 500;
    });
    EXPECT_EQ(seen, 500);
  }
}

TEST_F(CatalogViewTest, InconsistentViewsAndDeltasAreRefused) {
  // A delta version of a base video whose base row is still live.
  auto delta = CatalogDelta::Create(base(), NewVideos(1, 0, base().video_id(3)));
  ASSERT_TRUE(delta.ok());
  auto view = CatalogView::Create(*base_, *delta, nullptr, 1);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(view.status().message()), HasSubstr("not tombstoned"));
  // Tombstones beyond the base.
  auto wide = std::make_shared<RowBitmap>(5000);
  wide->Insert(4000);
  EXPECT_FALSE(CatalogView::Create(*base_, nullptr, wide, 1).ok());
  // Bad delta videos, each named.
  VideoColumns twice = NewVideos(2, 0, 9100000000);
  twice.ids[1] = twice.ids[0];
  EXPECT_THAT(std::string(CatalogDelta::Create(base(), twice).status().message()),
              HasSubstr("appears twice"));
  VideoColumns zero = NewVideos(1, 0, 9100000000);
  std::fill(zero.embeddings.begin(), zero.embeddings.end(), 0.f);
  EXPECT_THAT(std::string(CatalogDelta::Create(base(), zero).status().message()),
              HasSubstr("all zeros"));
  VideoColumns nan = NewVideos(1, 0, 9100000000);
  nan.embeddings[3] = std::nanf("");
  EXPECT_THAT(std::string(CatalogDelta::Create(base(), nan).status().message()),
              HasSubstr("NaN"));
  VideoColumns short_columns = NewVideos(2, 0, 9100000000);
  short_columns.popularity.pop_back();
  EXPECT_FALSE(CatalogDelta::Create(base(), short_columns).ok());
}

TEST_F(CatalogViewTest, NearlyEverythingRejectedStillFillsTheResultsExactly) {
  // HNSW with all but a few rows rejected used to come back short: the walk
  // reaches few accepted rows. The search falls back to a scan.
  for (int keep : {3, 12, 50, 700}) {
    SCOPED_TRACE(keep);
    MarkTable marks;
    marks.EnsureSize(base().num_videos());
    RowFilter filter(&marks);
    std::set<int32_t> kept;
    for (int32_t row = 0; row < base().num_videos(); ++row) {
      if (row % 53 == 0 && int(kept.size()) < keep) {
        kept.insert(row);
      } else {
        filter.Exclude(row);
      }
    }
    SearchScratch scratch;
    std::vector<Hit> got, exact;
    SearchStats stats;
    const int k = 20;
    base().index().Search(base().user_embedding(1), SearchOptions{k, 64, 0},
                          RowPredicate().Exclude(&filter), &scratch, &got, &stats);
    base().index().ExactSearch(base().user_embedding(1), k,
                               RowPredicate().Exclude(&filter), &scratch, &exact);
    EXPECT_EQ(got.size(), std::min<size_t>(k, kept.size()));
    ASSERT_EQ(got.size(), exact.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].row, exact[i].row);
    EXPECT_TRUE(stats.exact_fallback);
    EXPECT_EQ(stats.beam_width, 64);
  }
}

}  // namespace
}  // namespace feedrank
