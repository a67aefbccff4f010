// Live updates over a real catalogue: an upload is found by every source on
// the next view, a takedown by none, replaced videos keep one row, and a bad
// batch changes nothing.
#include "embeddings/live_catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

constexpr int kDim = 32;

std::shared_ptr<const Catalog> SmallCatalog() {
  static std::shared_ptr<const Catalog>* catalog = [] {
    auto data = Synthesize(testing::SmallSynth(2000, 50));
    EXPECT_TRUE(data.ok());
    IndexSpec spec;
    spec.set_type("hnsw");
    spec.set_hnsw_m(16);
    auto index =
        AnnIndex::Build(data->videos.embeddings.data(), 2000, kDim, &spec, nullptr, 1);
    EXPECT_TRUE(index.ok());
    *data->manifest.mutable_index() = spec;
    auto made =
        Catalog::Create(data->manifest, data->videos, data->users, *std::move(index));
    EXPECT_TRUE(made.ok()) << made.status();
    return new std::shared_ptr<const Catalog>(*std::move(made));
  }();
  return *catalog;
}

// A video where user 0 looks, newer and more popular than any base video.
VideoUpsert Upload(const Catalog& base, uint64_t id, float scale = 5.f) {
  VideoUpsert v;
  v.id = id;
  const float* e = base.user_embedding(0);
  v.embedding.assign(e, e + kDim);
  for (float& x : v.embedding) x *= scale;
  v.creator_id = 424242;
  v.duration_ms = 15000;
  v.upload_time_ms = 1893456000000;
  v.popularity = 1e9f;
  return v;
}

// Ids found by ANN for user 0, and by the popular and fresh lists (first 50).
struct Sources {
  std::set<uint64_t> ann, popular, fresh;
};
Sources Find(const CatalogView& view) {
  Sources s;
  SearchScratch scratch;
  std::vector<Hit> hits;
  SearchOptions options;
  options.k = 50;
  view.Search(view.base().user_embedding(0), options, RowPredicate(), &scratch, &hits);
  for (const Hit& h : hits) s.ann.insert(view.video_id(h.row));
  int n = 0;
  view.ForEachListed(CatalogView::List::kPopular, [&](int32_t row) {
    s.popular.insert(view.video_id(row));
    return ++n < 50;
  });
  n = 0;
  view.ForEachListed(CatalogView::List::kFresh, [&](int32_t row) {
    s.fresh.insert(view.video_id(row));
    return ++n < 50;
  });
  return s;
}

TEST(LiveCatalogTest, AnUploadIsFoundByEverySourceAndATakedownByNone) {
  auto base = SmallCatalog();
  LiveCatalog live(base, 7);
  EXPECT_EQ(live.view()->version(), 7u);
  UpdateBatch up;
  up.upserts.push_back(Upload(*base, 9'000'000'001));
  ApplyStats stats;
  auto view = live.Apply(up, &stats);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ((*view)->version(), 8u);
  EXPECT_EQ(stats.inserted, 1);
  Sources s = Find(**view);
  EXPECT_TRUE(s.ann.count(9'000'000'001));
  EXPECT_TRUE(s.popular.count(9'000'000'001));
  EXPECT_TRUE(s.fresh.count(9'000'000'001));

  // Delete it and a base video ANN found.
  const uint64_t base_id =
      *s.ann.rbegin() == 9'000'000'001 ? *s.ann.begin() : *s.ann.rbegin();
  UpdateBatch down;
  down.deletes = {9'000'000'001, base_id, 123};  // 123: not in the catalogue
  auto after = live.Apply(down, &stats);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(stats.deleted, 2);
  EXPECT_EQ(stats.unknown_deletes, 1);
  s = Find(**after);
  for (uint64_t gone : {uint64_t{9'000'000'001}, base_id}) {
    EXPECT_FALSE(s.ann.count(gone));
    EXPECT_FALSE(s.popular.count(gone));
    EXPECT_FALSE(s.fresh.count(gone));
    EXPECT_FALSE((*after)->VideoRow(gone).has_value());
  }
  // The old view is untouched: a request that holds it sees what it saw.
  EXPECT_TRUE((*view)->VideoRow(9'000'000'001).has_value());
  EXPECT_EQ(live.delta_size(), 0);
  // The base row and the upload's delta row.
  EXPECT_EQ(live.tombstones(), 2);
  // What Apply builds unchecked passes every check of a checked view.
  EXPECT_TRUE(CatalogView::Create(base, (*after)->delta_segments(),
                                  (*after)->shared_tombstones(), 99)
                  .ok());
}

TEST(LiveCatalogTest, AReplacedVideoHasOneLiveRowWithItsNewValues) {
  auto base = SmallCatalog();
  LiveCatalog live(base);
  const uint64_t id = base->video_id(10);
  VideoUpsert changed = Upload(*base, id);
  changed.popularity = 3;
  UpdateBatch batch;
  batch.upserts.push_back(changed);
  ApplyStats stats;
  auto view = live.Apply(batch, &stats);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(stats.replaced, 1);
  const auto row = (*view)->VideoRow(id);
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE((*view)->in_delta(*row));
  EXPECT_EQ((*view)->popularity(*row), 3.f);
  EXPECT_FALSE((*view)->live(10));
  EXPECT_EQ((*view)->num_live_videos(), base->num_videos());
  // Upserted again: still one row, replaced.
  changed.popularity = 4;
  batch.upserts = {changed};
  view = live.Apply(batch, &stats);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(stats.replaced, 1);
  EXPECT_EQ((*view)->popularity(*(*view)->VideoRow(id)), 4.f);
  EXPECT_EQ(live.delta_size(), 1);
}

TEST(LiveCatalogTest, ReuploadsOfDeletedVideosCountAsInsertsInAMixedBatch) {
  auto base = SmallCatalog();
  LiveCatalog live(base);
  UpdateBatch down;
  down.deletes = {base->video_id(5), base->video_id(1300)};
  ASSERT_TRUE(live.Apply(down).ok());
  // Replacements of live base videos first (their tombstones join the
  // batch's list out of order), then re-uploads of the deleted two.
  UpdateBatch batch;
  for (int row : {900, 400, 2, 1300, 5}) {
    batch.upserts.push_back(Upload(*base, base->video_id(row)));
  }
  ApplyStats stats;
  ASSERT_TRUE(live.Apply(batch, &stats).ok());
  EXPECT_EQ(stats.replaced, 3);
  EXPECT_EQ(stats.inserted, 2);
  EXPECT_EQ(live.tombstones(), 5);
}

TEST(LiveCatalogTest, ABadBatchIsRefusedWholeNamingTheItem) {
  auto base = SmallCatalog();
  LiveCatalog live(base);
  const auto before = live.view();
  auto refuse = [&](UpdateBatch batch, const std::string& message) {
    SCOPED_TRACE(message);
    auto view = live.Apply(batch);
    EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(view.status().message()), HasSubstr(message));
    EXPECT_EQ(live.view(), before);
    EXPECT_EQ(live.delta_size(), 0);
  };
  UpdateBatch b;
  b.upserts = {Upload(*base, 1), Upload(*base, 2)};
  b.upserts[1].embedding.pop_back();
  refuse(b, "upserts[1] id 2: embedding has 31 values, the catalogue's dimension is 32");
  b.upserts[1] = Upload(*base, 2);
  b.upserts[1].embedding[3] = std::numeric_limits<float>::quiet_NaN();
  refuse(b, "upserts[1] id 2: embedding[3] is nan, not finite");
  b.upserts[1] = Upload(*base, 2);
  b.upserts[1].embedding[0] = INFINITY;
  refuse(b, "embedding[0] is inf");
  b.upserts[1] = Upload(*base, 2, 0.f);
  refuse(b, "all zeros");
  b.upserts[1] = Upload(*base, 1);
  refuse(b, "upserts[1] id 1: the id appears twice");
  b.upserts[1] = Upload(*base, 2);
  b.deletes = {2};
  refuse(b, "deletes[0] id 2: the id appears twice");
  b.deletes.clear();
  b.upserts[1].popularity = -1;
  refuse(b, "popularity -1");
  refuse(UpdateBatch(), "empty");
  UpdateBatch big;
  big.deletes.resize(LiveCatalog::kMaxBatch + 1);
  for (size_t i = 0; i < big.deletes.size(); ++i) big.deletes[i] = i;
  refuse(big, "more than the limit of 10000");
}

// Many small batches (uploads, re-uploads, replacements of base videos,
// takedowns, user embeddings) against a plain map of what the catalogue
// should hold: the segmented delta answers every lookup, list and search
// as the reference says, stays within log2(rows) + 1 segments, and passes
// a checked view's consistency checks.
TEST(LiveCatalogTest, ManyBatchesAnswerAsAReferenceMapWithFewSegments) {
  auto base = SmallCatalog();
  LiveCatalog live(base);
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal;
  struct Want {
    bool deleted = false;
    std::vector<float> embedding;
    float popularity = 0;
    int64_t upload_time_ms = 0;
  };
  std::map<uint64_t, Want> want;  // ids touched by a batch
  std::map<uint64_t, std::vector<float>> want_users;
  for (int b = 0; b < 400; ++b) {
    UpdateBatch batch;
    std::set<uint64_t> used;
    const int n = 1 + int(rng() % (b % 50 == 0 ? 300 : 12));
    for (int i = 0; i < n; ++i) {
      // New ids, re-uploads of earlier ones, and base videos.
      const uint64_t id = rng() % 3 == 0 ? base->video_id(int32_t(rng() % 2000))
                                         : 9'000'000'000 + rng() % 3000;
      if (!used.insert(id).second) continue;
      if (rng() % 5 == 0) {
        batch.deletes.push_back(id);
        if (want.count(id) || base->VideoRow(id)) want[id].deleted = true;
        continue;
      }
      VideoUpsert v = Upload(*base, id, 1.f);
      for (float& x : v.embedding) x = normal(rng);
      v.popularity = float(rng() % 100000);
      v.upload_time_ms = 1893456000000 + int64_t(rng() % 1000000);
      batch.upserts.push_back(v);
      want[id] = {false, v.embedding, v.popularity, v.upload_time_ms};
    }
    if (b % 7 == 0) {
      UserUpsert u;
      u.id = b % 3 == 0 ? base->user_id(int32_t(rng() % 50)) : 777000 + rng() % 40;
      for (int d = 0; d < kDim; ++d) u.embedding.push_back(normal(rng));
      u.activity = 1;
      batch.users.push_back(u);
      want_users[u.id] = u.embedding;
    }
    ASSERT_TRUE(live.Apply(batch).ok()) << b;
  }
  const auto view = live.view();
  const int32_t delta_rows = view->num_rows() - base->num_videos();
  EXPECT_LE(view->delta_segments().size(), std::log2(double(delta_rows)) + 1);
  EXPECT_GT(view->delta_segments().size(), 1u);
  EXPECT_TRUE(CatalogView::Create(base, view->delta_segments(), view->shared_tombstones(),
                                  1, view->user_segments())
                  .ok());
  // Lookups.
  int live_delta = 0;
  for (const auto& [id, w] : want) {
    const auto row = view->VideoRow(id);
    ASSERT_EQ(row.has_value(), !w.deleted) << id;
    if (w.deleted) continue;
    live_delta += 1;
    ASSERT_TRUE(view->in_delta(*row));
    EXPECT_EQ(view->video_id(*row), id);
    EXPECT_EQ(view->popularity(*row), w.popularity);
    EXPECT_EQ(std::vector<float>(view->video_embedding(*row),
                                 view->video_embedding(*row) + kDim),
              w.embedding);
  }
  EXPECT_EQ(live.delta_size(), live_delta);
  EXPECT_EQ(view->num_live_videos(),
            base->num_videos() + live_delta -
                int(std::count_if(want.begin(), want.end(), [&](const auto& kv) {
                  return base->VideoRow(kv.first).has_value();
                })));
  for (const auto& [id, e] : want_users) {
    const float* got;
    float activity;
    ASSERT_TRUE(view->FindUser(id, &got, &activity));
    EXPECT_EQ(std::vector<float>(got, got + kDim), e) << id;
  }
  EXPECT_EQ(live.delta_users(), int(want_users.size()));
  // The popular list: every live row, best first, ties by id.
  std::vector<std::pair<float, uint64_t>> expected;
  for (int32_t r = 0; r < view->num_rows(); ++r) {
    if (view->live(r)) expected.push_back({-view->popularity(r), view->video_id(r)});
  }
  std::sort(expected.begin(), expected.end());
  std::vector<std::pair<float, uint64_t>> listed;
  view->ForEachListed(CatalogView::List::kPopular, [&](int32_t r) {
    listed.push_back({-view->popularity(r), view->video_id(r)});
    return listed.size() < 300;
  });
  expected.resize(listed.size());
  EXPECT_EQ(listed, expected);
  // Search: the delta's exact part, merged with the base's.
  SearchScratch scratch;
  std::vector<Hit> hits;
  SearchOptions options;
  options.k = 100;
  const float* q = base->user_embedding(1);
  view->Search(q, options, RowPredicate(), &scratch, &hits);
  std::vector<std::pair<float, uint64_t>> best_delta;
  for (int32_t r = base->num_videos(); r < view->num_rows(); ++r) {
    if (!view->live(r)) continue;
    float dot = 0;
    for (int d = 0; d < kDim; ++d) dot += q[d] * view->video_embedding(r)[d];
    best_delta.push_back({-dot, view->video_id(r)});
  }
  std::sort(best_delta.begin(), best_delta.end());
  std::set<uint64_t> found;
  for (const Hit& h : hits) {
    ASSERT_TRUE(view->live(h.row));
    found.insert(view->video_id(h.row));
  }
  // Every delta video scoring above the k-th hit is among the hits.
  for (const auto& [neg, id] : best_delta) {
    if (-neg <= hits.back().score) break;
    EXPECT_TRUE(found.count(id)) << id;
  }
}

}  // namespace
}  // namespace feedrank
