#include "cli/synth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"
#include "ranking/bundle.h"
#include "ranking/ranker.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> BundleFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files.push_back(std::filesystem::relative(entry.path(), dir).string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(SynthTest, SameSeedSameBytesForEveryIndexType) {
  for (const std::string type : {"hnsw", "ivf", "flat"}) {
    testing::TempDir dir;
    SynthOptions options = testing::SmallSynth(3000, 200, type);
    testing::WriteSmallBundle(options, dir.Sub("a"));
    testing::WriteSmallBundle(options, dir.Sub("b"));
    const std::vector<std::string> files = BundleFiles(dir.Sub("a"));
    ASSERT_EQ(files, BundleFiles(dir.Sub("b")));
    EXPECT_EQ(files.size(), 19u);  // manifest, 9 columns, index, 8 model tensors
    for (const std::string& file : files) {
      EXPECT_EQ(testing::ReadFile(dir.Sub("a/" + file)),
                testing::ReadFile(dir.Sub("b/" + file)))
          << type << ": " << file << " differs";
    }
    options.seed += 1;
    testing::WriteSmallBundle(options, dir.Sub("c"));
    EXPECT_NE(testing::ReadFile(dir.Sub("a/video_embeddings.npy")),
              testing::ReadFile(dir.Sub("c/video_embeddings.npy")));
  }
}

TEST(SynthTest, MissingParentDirectoriesAreMade) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("root/new/1"));
  EXPECT_TRUE(LoadBundle(dir.Sub("root/new/1")).ok());
}

TEST(SynthTest, CatalogueHasTheAdvertisedShape) {
  auto data = Synthesize(testing::SmallSynth(20000, 1000));
  ASSERT_TRUE(data.ok()) << data.status();
  // Creators with several videos.
  std::map<uint64_t, int> per_creator;
  for (uint64_t creator : data->videos.creator_ids) ++per_creator[creator];
  int multi = 0;
  for (const auto& [creator, n] : per_creator) multi += n >= 3;
  EXPECT_GT(multi, int(per_creator.size()) / 4);
  // Zipf-skewed popularity: the top 1% holds a large share.
  std::vector<float> pop = data->videos.popularity;
  std::sort(pop.rbegin(), pop.rend());
  double total = 0, top = 0;
  for (size_t i = 0; i < pop.size(); ++i) {
    total += pop[i];
    if (i < pop.size() / 100) top += pop[i];
  }
  EXPECT_GT(top / total, 0.15);
  // Clustered embeddings: a video is closer to its creator's other videos
  // than to random videos.
  const int d = 32;
  auto dot = [&](size_t a, size_t b) {
    float s = 0;
    for (int j = 0; j < d; ++j) {
      s += data->videos.embeddings[a * d + j] * data->videos.embeddings[b * d + j];
    }
    return s;
  };
  double same = 0, random = 0;
  int pairs = 0;
  for (size_t i = 0; i + 1 < 2000; ++i) {
    for (size_t j = i + 1; j < 2000; ++j) {
      if (data->videos.creator_ids[i] == data->videos.creator_ids[j]) {
        same += dot(i, j);
        random += dot(i, (j * 7919) % 20000);
        ++pairs;
      }
    }
  }
  ASSERT_GT(pairs, 10);
  EXPECT_GT(same / pairs, random / pairs + 0.3);
}

TEST(SynthTest, ModelPrefersRelevantPopularVideos) {
  auto bundle = testing::MakeSmallBundle(testing::SmallSynth(6000, 300));
  ASSERT_NE(bundle, nullptr);
  auto options = ResolveOptions(RankingConfig(), bundle->model->objectives());
  ASSERT_TRUE(options.ok());
  auto created = Ranker::Create(bundle, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(created.ok()) << created.status();
  const Ranker& ranker = **created;
  // Items the ranker puts on page one should be more relevant (higher dot)
  // than the average retrieved candidate, and predictions not saturated.
  double page_dot = 0, pred_sum = 0;
  int items = 0, preds = 0;
  for (int u = 0; u < 50; ++u) {
    RankRequest request;
    request.user_id = bundle->catalog->user_id(u);
    request.count = 10;
    request.context.now_ms = 1793491200000;
    RankResult result;
    ASSERT_TRUE(ranker.Rank(request, &result).ok());
    const float* user = bundle->catalog->user_embedding(u);
    for (const auto& item : result.items) {
      const float* v =
          bundle->catalog->video_embedding(*bundle->catalog->VideoRow(item.video_id));
      for (int j = 0; j < 32; ++j) page_dot += user[j] * v[j];
      ++items;
    }
    for (float p : result.predictions) {
      pred_sum += p;
      ++preds;
    }
  }
  // The mean user-video dot over random pairs is near 0 for these embeddings.
  EXPECT_GT(page_dot / items, 0.3);
  EXPECT_GT(pred_sum / preds, 0.02);
  EXPECT_LT(pred_sum / preds, 0.9);
}

TEST(SynthTest, RefusesBadOptions) {
  SynthOptions options = testing::SmallSynth();
  options.videos = 0;
  EXPECT_THAT(std::string(Synthesize(options).status().message()), HasSubstr("videos"));
  options = testing::SmallSynth();
  options.dim = 1;
  EXPECT_THAT(std::string(Synthesize(options).status().message()), HasSubstr("dim"));
  options = testing::SmallSynth();
  options.hidden = {4};
  EXPECT_THAT(std::string(Synthesize(options).status().message()), HasSubstr("hidden"));
  options = testing::SmallSynth();
  options.hidden = {};
  EXPECT_THAT(std::string(Synthesize(options).status().message()), HasSubstr("hidden"));
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 10), dir.Sub("b"));
  absl::Status again = WriteSynthBundle(testing::SmallSynth(500, 10), dir.Sub("b"));
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
}

TEST(SynthTest, EveryHiddenLayerNeedsAPairPerPlantedEffect) {
  // Every hidden layer carries the planted effects, not only the first and
  // the last: a narrow middle layer was once written past its end.
  SynthOptions options = testing::SmallSynth(300, 20);
  options.dim = 8;
  options.hidden = {16, 2, 16};
  absl::Status status = Synthesize(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("hidden: layer 1 has 2 units"));
  options.hidden = {16, kMinSynthHiddenWidth - 1, 16};
  EXPECT_THAT(std::string(Synthesize(options).status().message()),
              HasSubstr("hidden: layer 1 has 9 units"));
  options.hidden = {16, 16, kMaxSynthHiddenWidth + 1};
  EXPECT_THAT(std::string(Synthesize(options).status().message()),
              HasSubstr("hidden: layer 2 has"));
  options.hidden = {kMinSynthHiddenWidth, kMinSynthHiddenWidth, kMinSynthHiddenWidth};
  auto data = Synthesize(options);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->model.weights.size(), 4u);
  EXPECT_EQ(data->model.weights[1].rows(), kMinSynthHiddenWidth);
  EXPECT_EQ(data->model.weights[1].cols(), kMinSynthHiddenWidth);
}

// The recall@100 of IVF at nprobe `nprobe` against an exact search, mean
// over the first `queries` users, on a synthetic catalogue.
double IvfRecall(const SynthOptions& base, int nprobe, int queries) {
  SynthOptions o = base;
  o.index.set_type("ivf");
  o.index.set_ivf_nlist(128);
  auto data = Synthesize(o);
  EXPECT_TRUE(data.ok()) << data.status();
  IndexSpec spec = o.index;
  auto index =
      AnnIndex::Build(data->videos.embeddings.data(), o.videos, o.dim, &spec, nullptr, 1);
  EXPECT_TRUE(index.ok()) << index.status();
  SearchScratch scratch;
  std::vector<Hit> exact, approx;
  double recall = 0;
  for (int q = 0; q < queries; ++q) {
    const float* user = &data->users.embeddings[size_t(q) * o.dim];
    (*index)->ExactSearch(user, 100, RowPredicate(), &scratch, &exact);
    SearchOptions search;
    search.k = 100;
    search.nprobe = nprobe;
    (*index)->Search(user, search, RowPredicate(), &scratch, &approx, nullptr);
    std::set<int32_t> truth;
    for (const Hit& h : exact) truth.insert(h.row);
    int found = 0;
    for (const Hit& h : approx) found += truth.count(h.row);
    recall += double(found) / double(exact.size());
  }
  return recall / queries;
}

TEST(SynthTest, TheHardDistributionIsHarderForIvfAndHasLogNormalNorms) {
  SynthOptions topics = testing::SmallSynth(20000, 100);
  SynthOptions hard = topics;
  hard.distribution = "hard";
  const double easy_recall = IvfRecall(topics, 4, 50);
  const double hard_recall = IvfRecall(hard, 4, 50);
  EXPECT_GT(easy_recall, hard_recall + 0.15) << easy_recall << " vs " << hard_recall;
  auto data = Synthesize(hard);
  ASSERT_TRUE(data.ok());
  // Norms: log-normal(0, 0.3).
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < hard.videos; ++i) {
    double n2 = 0;
    for (int j = 0; j < hard.dim; ++j) {
      const double x = data->videos.embeddings[size_t(i) * hard.dim + j];
      n2 += x * x;
    }
    const double log_norm = 0.5 * std::log(n2);
    sum += log_norm;
    sum2 += log_norm * log_norm;
  }
  const double mean = sum / double(hard.videos);
  const double sd = std::sqrt(sum2 / double(hard.videos) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 0.3, 0.01);
  // Deterministic for a seed; refused when unknown.
  auto again = Synthesize(hard);
  EXPECT_EQ(again->videos.embeddings, data->videos.embeddings);
  hard.distribution = "uniform";
  EXPECT_THAT(std::string(Synthesize(hard).status().message()),
              HasSubstr("distribution: 'uniform'"));
}

}  // namespace
}  // namespace feedrank
