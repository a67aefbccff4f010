#include "embeddings/ann_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/simd.h"
#include "cli/synth.h"
#include "fuzz/index_input.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::feedrank::testing::SmallSynth;
using ::feedrank::testing::TempDir;
using ::feedrank::testing::WriteFile;
using ::testing::HasSubstr;

// FAISS 1.7.3 has no namespace-level idx_t.
using FaissId = faiss::Index::idx_t;

constexpr int64_t kVideos = 5000;
constexpr int kDim = 32;
constexpr int kQueries = 100;

constexpr std::array<const char*, 3> kTypes = {"hnsw", "ivf", "flat"};

// Rows of `hits`, in order.
std::vector<int32_t> Rows(const std::vector<Hit>& hits) {
  std::vector<int32_t> rows;
  for (const Hit& h : hits) rows.push_back(h.row);
  return rows;
}

// Exact top-k by an independent scan: Dot of every row, sorted best first,
// ties by lower row. Uses simd::Dot so that scores are bit-identical to the
// index's and the comparison can be exact.
std::vector<Hit> BruteForce(const std::vector<float>& x, const float* q, int k,
                            const std::vector<bool>* excluded = nullptr) {
  const int64_t n = static_cast<int64_t>(x.size()) / kDim;
  std::vector<Hit> all;
  for (int64_t i = 0; i < n; ++i) {
    if (excluded != nullptr && (*excluded)[i]) continue;
    all.push_back(Hit{simd::Dot(q, x.data() + i * kDim, kDim), int32_t(i)});
  }
  std::sort(all.begin(), all.end(), BetterHit);
  if (all.size() > size_t(std::max(k, 0))) all.resize(std::max(k, 0));
  return all;
}

std::vector<Hit> Search(const AnnIndex& index, const float* q, SearchOptions options,
                        const RowFilter* filter = nullptr) {
  SearchScratch scratch;
  std::vector<Hit> out;
  index.Search(q, options, RowPredicate().Exclude(filter), &scratch, &out);
  return out;
}

std::vector<Hit> Exact(const AnnIndex& index, const float* q, int k,
                       const RowFilter* filter = nullptr) {
  SearchScratch scratch;
  std::vector<Hit> out;
  index.ExactSearch(q, k, RowPredicate().Exclude(filter), &scratch, &out);
  return out;
}

// Search, also returning what ran.
std::vector<Hit> SearchWithStats(const AnnIndex& index, const float* q,
                                 SearchOptions options, const RowFilter* filter,
                                 SearchStats* stats) {
  SearchScratch scratch;
  std::vector<Hit> out;
  index.Search(q, options, RowPredicate().Exclude(filter), &scratch, &out, stats);
  return out;
}

SearchOptions K(int k) {
  SearchOptions options;
  options.k = k;
  return options;
}

// Checks the invariants of every result list: unique rows in range, best
// first with ties by lower row.
void ExpectWellFormed(const std::vector<Hit>& hits, int64_t n) {
  std::set<int32_t> seen;
  for (size_t i = 0; i < hits.size(); ++i) {
    ASSERT_GE(hits[i].row, 0);
    ASSERT_LT(hits[i].row, n);
    ASSERT_TRUE(seen.insert(hits[i].row).second) << "row " << hits[i].row << " twice";
    if (i > 0) {
      ASSERT_TRUE(BetterHit(hits[i - 1], hits[i])) << "at " << i;
    }
  }
}

// Compares our top-k with FAISS's (labels, similarities). Both are computed in
// float by different kernels, so rows whose score is within `tol` of the k-th
// score may legitimately swap across the cut; any other difference fails.
void ExpectSameTopK(const std::vector<Hit>& ours, const float* faiss_scores,
                    const FaissId* faiss_rows, int k, float tol) {
  std::vector<Hit> theirs;
  for (int i = 0; i < k; ++i) {
    if (faiss_rows[i] >= 0) {
      theirs.push_back(Hit{faiss_scores[i], int32_t(faiss_rows[i])});
    }
  }
  ASSERT_EQ(ours.size(), theirs.size());
  if (ours.empty()) return;
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_NEAR(ours[i].score, theirs[i].score, tol) << "rank " << i;
  }
  const float cut = theirs.back().score;
  std::set<int32_t> their_rows;
  for (const Hit& h : theirs) their_rows.insert(h.row);
  std::set<int32_t> our_rows;
  for (const Hit& h : ours) {
    our_rows.insert(h.row);
    if (their_rows.count(h.row) == 0) {
      EXPECT_NEAR(h.score, cut, tol) << "row " << h.row << " only in ours";
    }
  }
  for (const Hit& h : theirs) {
    if (our_rows.count(h.row) == 0) {
      EXPECT_NEAR(h.score, cut, tol) << "row " << h.row << " only in FAISS's";
    }
  }
}

// Runs FAISS single-threaded for the scope, restoring the caller's setting.
class SingleThreadedFaiss {
 public:
  SingleThreadedFaiss() : previous_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedFaiss() { omp_set_num_threads(previous_); }

 private:
  int previous_;
};

double Overlap(const std::vector<int32_t>& a, const std::vector<int32_t>& b, int k) {
  std::set<int32_t> sa(a.begin(), a.end());
  int common = 0;
  for (int32_t r : b) common += sa.count(r);
  return double(common) / k;
}

class AnnIndexTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto data = Synthesize(SmallSynth(kVideos, kQueries));
    ASSERT_TRUE(data.ok()) << data.status();
    videos_ = new std::vector<float>(std::move(data->videos.embeddings));
    queries_ = new std::vector<float>(std::move(data->users.embeddings));
    dir_ = new TempDir();
  }
  static void TearDownTestSuite() {
    for (AnnIndex*& index : indexes_) {
      delete index;
      index = nullptr;
    }
    delete videos_;
    delete queries_;
    delete dir_;
  }

  void SetUp() override { ASSERT_NE(videos_, nullptr) << "test suite set-up failed"; }

  // The index of `type` over Videos(), built on first use (ctest runs each
  // test in its own process, and the IVF k-means is the slow part) and
  // written to Path(type).
  static const AnnIndex& Index(const std::string& type) {
    const size_t t = Slot(type);
    if (indexes_[t] == nullptr) {
      // SmallSynth's HNSW settings (M 16, efConstruction 40): a graph sparse
      // enough that small beams miss neighbours, so recall differences show.
      specs_[t] = SmallSynth(kVideos, kQueries, kTypes[t]).index;
      // One thread: the same graph every run, so the recall checks are
      // reproducible.
      auto index = AnnIndex::Build(videos_->data(), kVideos, kDim, &specs_[t], nullptr,
                                   /*threads=*/1);
      absl::Status written =
          index.ok() ? (*index)->Write(dir_->Sub(type + ".faiss")) : index.status();
      if (!written.ok()) {
        // Every caller needs the index; there is nothing to test without it.
        std::fprintf(stderr, "building the %s index failed: %s\n", type.c_str(),
                     written.ToString().c_str());
        std::abort();
      }
      indexes_[t] = index->release();
    }
    return *indexes_[t];
  }
  // The spec after Build filled in its defaults.
  static const IndexSpec& Spec(const std::string& type) {
    Index(type);
    return specs_[Slot(type)];
  }
  static std::string Path(const std::string& type) {
    Index(type);
    return dir_->Sub(type + ".faiss");
  }
  static const std::vector<float>& Videos() { return *videos_; }
  static const float* Query(int i) { return queries_->data() + size_t(i) * kDim; }

 private:
  static size_t Slot(const std::string& type) {
    return std::find(kTypes.begin(), kTypes.end(), type) - kTypes.begin();
  }

  static std::vector<float>* videos_;
  static std::vector<float>* queries_;
  static TempDir* dir_;
  static std::array<AnnIndex*, 3> indexes_;
  static std::array<IndexSpec, 3> specs_;
};

std::vector<float>* AnnIndexTest::videos_ = nullptr;
std::vector<float>* AnnIndexTest::queries_ = nullptr;
TempDir* AnnIndexTest::dir_ = nullptr;
std::array<AnnIndex*, 3> AnnIndexTest::indexes_ = {};
std::array<IndexSpec, 3> AnnIndexTest::specs_ = {};

TEST_F(AnnIndexTest, BuildsEachType) {
  EXPECT_EQ(Index("hnsw").type(), AnnIndex::Type::kHnsw);
  EXPECT_EQ(Index("ivf").type(), AnnIndex::Type::kIvf);
  EXPECT_EQ(Index("flat").type(), AnnIndex::Type::kFlat);
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    const AnnIndex& index = Index(type);
    EXPECT_EQ(index.dim(), kDim);
    EXPECT_EQ(index.size(), kVideos);
    EXPECT_EQ(index.faiss_index().ntotal, kVideos);
    EXPECT_EQ(index.faiss_index().metric_type, faiss::METRIC_INNER_PRODUCT);
    EXPECT_TRUE(index.VerifyVectors(Videos().data()).ok());
  }
  // HNSW and flat keep the vectors in row order; IVF in list order.
  for (const char* type : {"hnsw", "flat"}) {
    const float* rows = Index(type).row_vectors();
    ASSERT_NE(rows, nullptr) << type;
    EXPECT_TRUE(std::equal(rows, rows + kVideos * kDim, Videos().begin())) << type;
  }
  EXPECT_EQ(Index("ivf").row_vectors(), nullptr);
}

TEST_F(AnnIndexTest, BuildFillsDefaultParameters) {
  constexpr int64_t kFew = 1000;
  IndexSpec hnsw;
  hnsw.set_type("hnsw");
  auto index = AnnIndex::Build(Videos().data(), kFew, kDim, &hnsw);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(hnsw.hnsw_m(), 32u);
  EXPECT_EQ(hnsw.hnsw_ef_construction(), 80u);
  EXPECT_EQ(hnsw.beam_width(), 256u);
  EXPECT_EQ((*index)->default_beam_width(), 256);

  IndexSpec ivf;
  ivf.set_type("ivf");
  index = AnnIndex::Build(Videos().data(), kFew, kDim, &ivf);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(ivf.ivf_nlist(), 126u);  // int(4 * sqrt(1000))
  EXPECT_EQ(ivf.ivf_nprobe(), 7u);   // 126 / 16
  EXPECT_EQ((*index)->default_nprobe(), 7);
  EXPECT_EQ(dynamic_cast<const faiss::IndexIVFFlat&>((*index)->faiss_index()).nlist,
            126u);

  // Given parameters are kept.
  IndexSpec given;
  given.set_type("ivf");
  given.set_ivf_nlist(20);
  given.set_ivf_nprobe(3);
  index = AnnIndex::Build(Videos().data(), kFew, kDim, &given);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(given.ivf_nlist(), 20u);
  EXPECT_EQ((*index)->default_nprobe(), 3);

  EXPECT_EQ(Index("hnsw").default_beam_width(), 256);
  EXPECT_EQ(Spec("hnsw").hnsw_m(), 16u);
  EXPECT_EQ(Index("ivf").default_nprobe(), int(Spec("ivf").ivf_nprobe()));
}

TEST_F(AnnIndexTest, BuildReportsProgress) {
  std::vector<std::pair<int64_t, int64_t>> calls;
  IndexSpec spec;
  spec.set_type("flat");
  auto index = AnnIndex::Build(
      Videos().data(), kVideos, kDim, &spec,
      [&](int64_t done, int64_t total) { calls.emplace_back(done, total); });
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(kVideos, kVideos));
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_GT(calls[i].first, calls[i - 1].first);
  }
}

TEST_F(AnnIndexTest, BuildRefusesBadArguments) {
  IndexSpec spec;
  spec.set_type("annoy");
  auto index = AnnIndex::Build(Videos().data(), 100, kDim, &spec);
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(index.status().message()), HasSubstr("'annoy'"));

  spec.set_type("flat");
  EXPECT_EQ(AnnIndex::Build(Videos().data(), 0, kDim, &spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AnnIndex::Build(Videos().data(), 100, 0, &spec).status().code(),
            absl::StatusCode::kInvalidArgument);

  spec.set_type("ivf");
  spec.set_ivf_nlist(101);
  index = AnnIndex::Build(Videos().data(), 100, kDim, &spec);
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(index.status().message()), HasSubstr("ivf_nlist 101"));
}

TEST_F(AnnIndexTest, VerifyVectorsNamesTheFirstDifferingRow) {
  std::vector<float> other = Videos();
  other[1234 * kDim + 31] = -other[1234 * kDim + 31] + 1.f;
  other[4000 * kDim] += 1.f;
  for (const char* type : kTypes) {
    const absl::Status status = Index(type).VerifyVectors(other.data());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << type;
    EXPECT_THAT(std::string(status.message()), HasSubstr("row 1234 ")) << type;
  }
}

TEST_F(AnnIndexTest, WriteThenLoadGivesIdenticalResults) {
  MarkTable marks;
  marks.EnsureSize(kVideos);
  RowFilter filter(&marks);
  for (int32_t row = 0; row < kVideos; row += 3) filter.Exclude(row);
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    auto loaded = AnnIndex::Load(Path(type), Spec(type), kDim, kVideos);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const AnnIndex& a = Index(type);
    const AnnIndex& b = **loaded;
    EXPECT_EQ(b.type(), a.type());
    EXPECT_EQ(b.default_beam_width(), a.default_beam_width());
    EXPECT_EQ(b.default_nprobe(), a.default_nprobe());
    EXPECT_TRUE(b.VerifyVectors(Videos().data()).ok());
    for (int i = 0; i < 20; ++i) {
      for (const RowFilter* f : {static_cast<const RowFilter*>(nullptr),
                                 static_cast<const RowFilter*>(&filter)}) {
        const std::vector<Hit> x = Search(a, Query(i), K(50), f);
        const std::vector<Hit> y = Search(b, Query(i), K(50), f);
        ASSERT_EQ(Rows(x), Rows(y)) << "query " << i;
        for (size_t j = 0; j < x.size(); ++j) ASSERT_EQ(x[j].score, y[j].score);
      }
    }
  }
}

TEST_F(AnnIndexTest, ExactSearchEqualsBruteForce) {
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    for (int i = 0; i < 30; ++i) {
      for (int k : {1, 10, 100}) {
        const std::vector<Hit> got = Exact(Index(type), Query(i), k);
        const std::vector<Hit> want = BruteForce(Videos(), Query(i), k);
        ASSERT_EQ(Rows(got), Rows(want)) << "query " << i << " k " << k;
        for (size_t j = 0; j < got.size(); ++j) {
          ASSERT_EQ(got[j].score, want[j].score);
          // And the score is the inner product, to float precision.
          double dot = 0;
          for (int c = 0; c < kDim; ++c) {
            dot += double(Query(i)[c]) * Videos()[size_t(got[j].row) * kDim + c];
          }
          ASSERT_NEAR(got[j].score, dot, 1e-4 * std::max(1.0, std::abs(dot)));
        }
      }
    }
  }
}

TEST_F(AnnIndexTest, TiesBreakByLowerRow) {
  // 40 distinct vectors, each at four rows: every score is tied four ways.
  constexpr int64_t kDistinct = 40;
  std::vector<float> x(4 * kDistinct * kDim);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < kDistinct; ++i) {
    for (int c = 0; c < kDim; ++c) {
      const float v = normal(rng);
      for (int64_t copy = 0; copy < 4; ++copy) x[(i + copy * kDistinct) * kDim + c] = v;
    }
  }
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    IndexSpec spec;
    spec.set_type(type);
    spec.set_ivf_nlist(8);
    auto index = AnnIndex::Build(x.data(), 4 * kDistinct, kDim, &spec);
    ASSERT_TRUE(index.ok()) << index.status();
    for (int q = 0; q < 5; ++q) {
      const float* query = x.data() + q * 7 * kDim;
      const std::vector<Hit> want = BruteForce(x, query, 22);
      EXPECT_EQ(Rows(Exact(**index, query, 22)), Rows(want));
      if (std::string(type) != "hnsw") {
        SearchOptions options = K(22);
        options.nprobe = 8;
        EXPECT_EQ(Rows(Search(**index, query, options)), Rows(want));
      }
    }
  }
}

TEST_F(AnnIndexTest, FlatSearchMatchesFaiss) {
  const AnnIndex& index = Index("flat");
  SingleThreadedFaiss single_threaded;
  for (int k : {10, 100}) {
    std::vector<float> distances(size_t(kQueries) * k);
    std::vector<FaissId> labels(size_t(kQueries) * k);
    index.faiss_index().search(kQueries, Query(0), k, distances.data(), labels.data());
    for (int i = 0; i < kQueries; ++i) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " query " << i);
      const std::vector<Hit> ours = Search(index, Query(i), K(k));
      ExpectWellFormed(ours, kVideos);
      ExpectSameTopK(ours, &distances[size_t(i) * k], &labels[size_t(i) * k], k, 1e-4f);
      // The flat index's Search is exact.
      ASSERT_EQ(Rows(ours), Rows(Exact(index, Query(i), k)));
    }
  }
}

TEST_F(AnnIndexTest, IvfSearchMatchesFaissAtEqualNprobe) {
  const AnnIndex& index = Index("ivf");
  const auto& faiss_ivf = dynamic_cast<const faiss::IndexIVFFlat&>(index.faiss_index());
  SingleThreadedFaiss single_threaded;
  // Query by query: FAISS ranks centroids with BLAS for batches of 20 or
  // more, whose rounding could flip near-tied lists.
  for (int nprobe : {1, 4, 16}) {
    faiss::SearchParametersIVF params;
    params.nprobe = nprobe;
    for (int k : {10, 50}) {
      std::vector<float> distances(k);
      std::vector<FaissId> labels(k);
      SearchOptions options = K(k);
      options.nprobe = nprobe;
      int widened = 0;
      for (int i = 0; i < kQueries; ++i) {
        SCOPED_TRACE(::testing::Message()
                     << "nprobe " << nprobe << " k " << k << " query " << i);
        SearchStats stats;
        const std::vector<Hit> ours =
            SearchWithStats(index, Query(i), options, nullptr, &stats);
        ExpectWellFormed(ours, kVideos);
        // Lists holding fewer than k vectors are widened (doubling nprobe):
        // compare with FAISS at the nprobe actually used.
        ASSERT_GE(stats.nprobe, nprobe);
        ASSERT_EQ(ours.size(), size_t(k));
        params.nprobe = stats.nprobe;
        faiss_ivf.search(1, Query(i), k, distances.data(), labels.data(), &params);
        params.nprobe = nprobe;
        ExpectSameTopK(ours, distances.data(), labels.data(), k, 1e-4f);
        widened += stats.nprobe > nprobe;
      }
      // nprobe 1 with ~18 vectors per list must come up short and widen.
      if (nprobe == 1 && k == 50) {
        EXPECT_GT(widened, 0);
      }
    }
  }
}

// scan_codes bf16: the same file scanned in bf16, the best k + k/4 rescored in
// float. Scores returned are the exact float ones, results nearly those of
// the float scan, and the exact search stays exact.
TEST_F(AnnIndexTest, IvfBf16ScanRescoresInFloat) {
  const AnnIndex& floats = Index("ivf");
  IndexSpec spec = Spec("ivf");
  spec.set_scan_codes("bf16");
  auto loaded = AnnIndex::Load(Path("ivf"), spec, kDim, kVideos);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const AnnIndex& bf16 = **loaded;
  EXPECT_STREQ(bf16.scan_codes(), "bf16");
  EXPECT_STREQ(floats.scan_codes(), "float");
  MarkTable marks;
  marks.EnsureSize(kVideos);
  for (int nprobe : {4, 16}) {
    for (int k : {10, 50}) {
      SearchOptions options = K(k);
      options.nprobe = nprobe;
      double overlap = 0;
      for (int i = 0; i < kQueries; ++i) {
        SCOPED_TRACE(::testing::Message()
                     << "nprobe " << nprobe << " k " << k << " query " << i);
        // Every third row excluded: the predicate applies to the bf16 scan.
        RowFilter filter(&marks);
        for (int64_t r = i % 3; r < kVideos; r += 3) filter.Exclude(int32_t(r));
        const std::vector<Hit> got = Search(bf16, Query(i), options, &filter);
        const std::vector<Hit> want = Search(floats, Query(i), options, &filter);
        ExpectWellFormed(got, kVideos);
        ASSERT_EQ(got.size(), size_t(k));
        for (const Hit& hit : got) {
          EXPECT_FALSE(filter.Excluded(hit.row));
          EXPECT_EQ(hit.score,
                    simd::Dot(Query(i), Videos().data() + hit.row * kDim, kDim));
        }
        overlap += Overlap(Rows(want), Rows(got), k);
      }
      EXPECT_GE(overlap / kQueries, 0.99) << "nprobe " << nprobe << " k " << k;
    }
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Rows(Exact(bf16, Query(i), 20)), Rows(Exact(floats, Query(i), 20)));
  }
  // A rescore depth of k keeps the bf16 order's top k (then rescored).
  SearchOptions shallow = K(50);
  shallow.nprobe = 16;
  shallow.rescore = 1;
  EXPECT_EQ(Search(bf16, Query(0), shallow).size(), 50u);
}

TEST_F(AnnIndexTest, IvfProbingEveryListIsExact) {
  const AnnIndex& index = Index("ivf");
  SearchOptions options = K(20);
  options.nprobe = 100000;  // clamped to nlist
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Rows(Search(index, Query(i), options)), Rows(Exact(index, Query(i), 20)));
  }
}

// Recall of `got` against the exact top-k.
double Recall(const std::vector<int32_t>& got, const std::vector<int32_t>& exact, int k) {
  return Overlap(exact, got, k);
}

// Mean recall over the queries of FAISS's HNSW search at `ef_search`.
// `labels` receives the results (kQueries x k).
double FaissHnswRecall(faiss::IndexHNSW* hnsw, const float* queries, int k, int ef_search,
                       const std::vector<std::vector<int32_t>>& exact,
                       std::vector<FaissId>* labels) {
  hnsw->hnsw.efSearch = ef_search;
  std::vector<float> distances(size_t(kQueries) * k);
  labels->assign(size_t(kQueries) * k, -1);
  hnsw->search(kQueries, queries, k, distances.data(), labels->data());
  double recall = 0;
  for (int i = 0; i < kQueries; ++i) {
    const std::vector<int32_t> rows(labels->begin() + size_t(i) * k,
                                    labels->begin() + size_t(i + 1) * k);
    recall += Recall(rows, exact[i], k);
  }
  return recall / kQueries;
}

TEST_F(AnnIndexTest, HnswMatchesFaissAtEqualBeamWidth) {
  const AnnIndex& index = Index("hnsw");
  const int efsearch_before =
      dynamic_cast<const faiss::IndexHNSW&>(index.faiss_index()).hnsw.efSearch;
  // A separate copy for FAISS, so the index under test is never mutated.
  std::unique_ptr<faiss::Index> copy(faiss::read_index(Path("hnsw").c_str()));
  auto* faiss_hnsw = dynamic_cast<faiss::IndexHNSW*>(copy.get());
  ASSERT_NE(faiss_hnsw, nullptr);
  SingleThreadedFaiss single_threaded;

  for (int k : {10, 100}) {
    std::vector<std::vector<int32_t>> exact(kQueries);
    for (int i = 0; i < kQueries; ++i) exact[i] = Rows(Exact(index, Query(i), k));
    double previous_recall = 0;
    for (int beam : {16, 64, 256}) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " beam " << beam);
      // Our beam is raised to k (SearchOptions). FAISS 1.7.3 only sizes its
      // queue by max(efSearch, k) and still stops on efSearch, so efSearch < k
      // is a narrower search there; compare at the effective width, and
      // separately check we never do worse than FAISS given the raw value.
      std::vector<FaissId> labels, raw_labels;
      const double faiss_recall =
          FaissHnswRecall(faiss_hnsw, Query(0), k, std::max(beam, k), exact, &labels);
      const double faiss_raw_recall =
          FaissHnswRecall(faiss_hnsw, Query(0), k, beam, exact, &raw_labels);
      SearchOptions options = K(k);
      options.beam_width = beam;
      double overlap = 0, our_recall = 0;
      for (int i = 0; i < kQueries; ++i) {
        const std::vector<Hit> ours = Search(index, Query(i), options);
        ExpectWellFormed(ours, kVideos);
        ASSERT_EQ(ours.size(), size_t(k));
        const std::vector<int32_t> theirs(labels.begin() + size_t(i) * k,
                                          labels.begin() + size_t(i + 1) * k);
        overlap += Overlap(theirs, Rows(ours), k);
        our_recall += Recall(Rows(ours), exact[i], k);
      }
      overlap /= kQueries;
      our_recall /= kQueries;
      std::printf(
          "hnsw k=%d beam=%d: overlap with FAISS %.4f, recall ours %.4f, "
          "FAISS %.4f (efSearch %d: %.4f)\n",
          k, beam, overlap, our_recall, faiss_recall, beam, faiss_raw_recall);
      EXPECT_GE(overlap, 0.95);
      EXPECT_GE(our_recall, faiss_recall - 0.02);
      EXPECT_GE(our_recall, faiss_raw_recall - 0.02);
      EXPECT_GE(our_recall, previous_recall);
      previous_recall = our_recall;
    }
  }
  EXPECT_EQ(dynamic_cast<const faiss::IndexHNSW&>(index.faiss_index()).hnsw.efSearch,
            efsearch_before);
}

TEST_F(AnnIndexTest, HnswDefaultBeamIsTheSpecBeam) {
  const AnnIndex& index = Index("hnsw");
  SearchOptions explicit_beam = K(10);
  explicit_beam.beam_width = int(Spec("hnsw").beam_width());
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Rows(Search(index, Query(i), K(10))),
              Rows(Search(index, Query(i), explicit_beam)));
  }
}

// A filter excluding each row with probability `p`, and the same as a vector.
struct RandomExclusion {
  RandomExclusion(int64_t n, double p, uint64_t seed) : excluded(n, false) {
    marks.EnsureSize(n);
    filter = std::make_unique<RowFilter>(&marks);
    std::mt19937_64 rng(seed);
    std::bernoulli_distribution coin(p);
    for (int64_t i = 0; i < n; ++i) {
      if (coin(rng)) {
        excluded[i] = true;
        filter->Exclude(static_cast<int32_t>(i));
      }
    }
  }
  MarkTable marks;
  std::unique_ptr<RowFilter> filter;
  std::vector<bool> excluded;
};

// What a filtered IVF search must return: the unfiltered search of every
// vector in the probed lists, minus excluded rows, cut to k.
// The k best accepted rows among those in the `nprobe` lists FAISS probes
// for `q` (FAISS picks the lists; the rows are scored with simd::Dot, as
// the index does, so the order compares exactly).
std::vector<int32_t> IvfFilteredReference(const AnnIndex& index,
                                          const std::vector<float>& videos,
                                          const float* q, int k, int nprobe,
                                          const std::vector<bool>& excluded) {
  const auto& ivf = dynamic_cast<const faiss::IndexIVFFlat&>(index.faiss_index());
  SingleThreadedFaiss single_threaded;
  faiss::SearchParametersIVF params;
  params.nprobe = nprobe;
  const int64_t n = index.size();
  std::vector<float> distances(n);
  std::vector<FaissId> labels(n);
  ivf.search(1, q, n, distances.data(), labels.data(), &params);
  std::vector<Hit> hits;
  for (FaissId row : labels) {
    if (row >= 0 && !excluded[row]) {
      hits.push_back(Hit{simd::Dot(q, videos.data() + row * kDim, kDim), int32_t(row)});
    }
  }
  std::sort(hits.begin(), hits.end(), BetterHit);
  if (hits.size() > size_t(k)) hits.resize(k);
  return Rows(hits);
}

TEST_F(AnnIndexTest, FilterExcludesRowsForEveryType) {
  RandomExclusion ex(kVideos, 0.3, 21);
  EXPECT_EQ(ex.filter->count(),
            size_t(std::count(ex.excluded.begin(), ex.excluded.end(), true)));
  for (int k : {10, 100}) {
    double hnsw_recall = 0;
    for (int i = 0; i < 50; ++i) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " query " << i);
      const std::vector<int32_t> exact =
          Rows(BruteForce(Videos(), Query(i), k, &ex.excluded));
      for (const char* type : kTypes) {
        SCOPED_TRACE(type);
        SearchStats stats;
        const std::vector<Hit> got =
            SearchWithStats(Index(type), Query(i), K(k), ex.filter.get(), &stats);
        ExpectWellFormed(got, kVideos);
        for (const Hit& h : got) ASSERT_FALSE(ex.excluded[h.row]) << h.row;
        if (std::string(type) == "flat") {
          ASSERT_EQ(Rows(got), exact);
        } else if (std::string(type) == "ivf") {
          // At the nprobe the search used (the default, or wider when the
          // default lists held fewer than k passing rows).
          ASSERT_GE(stats.nprobe, Index(type).default_nprobe());
          ASSERT_EQ(Rows(got), IvfFilteredReference(Index(type), Videos(), Query(i), k,
                                                    stats.nprobe, ex.excluded));
          // The default 17 of 282 lists hold ~300 vectors, ~210 passing.
          ASSERT_EQ(got.size(), size_t(k));
        } else {
          ASSERT_EQ(got.size(), size_t(k));
          hnsw_recall += Recall(Rows(got), exact, k);
        }
      }
      // ExactSearch filters the same way.
      ASSERT_EQ(Rows(Exact(Index("ivf"), Query(i), k, ex.filter.get())), exact);
      ASSERT_EQ(Rows(Exact(Index("hnsw"), Query(i), k, ex.filter.get())), exact);
    }
    EXPECT_GE(hnsw_recall / 50, 0.9) << "k " << k;
  }
}

TEST_F(AnnIndexTest, FilterExcludingTheTrueTopTen) {
  for (int i = 0; i < 30; ++i) {
    SCOPED_TRACE(::testing::Message() << "query " << i);
    const std::vector<Hit> top20 = BruteForce(Videos(), Query(i), 20);
    std::vector<bool> excluded(kVideos, false);
    MarkTable marks;
    marks.EnsureSize(kVideos);
    RowFilter filter(&marks);
    for (int j = 0; j < 10; ++j) {
      excluded[top20[j].row] = true;
      filter.Exclude(top20[j].row);
      filter.Exclude(top20[j].row);  // counted once
    }
    EXPECT_EQ(filter.count(), 10u);
    const std::vector<int32_t> next10 =
        Rows(std::vector<Hit>(top20.begin() + 10, top20.end()));
    for (const char* type : kTypes) {
      SCOPED_TRACE(type);
      const std::vector<Hit> got = Search(Index(type), Query(i), K(10), &filter);
      ASSERT_EQ(got.size(), 10u);
      for (const Hit& h : got) ASSERT_FALSE(excluded[h.row]) << h.row;
      if (std::string(type) == "flat") {
        EXPECT_EQ(Rows(got), next10);
      } else if (std::string(type) == "ivf") {
        EXPECT_EQ(Rows(got),
                  IvfFilteredReference(Index(type), Videos(), Query(i), 10,
                                       Index(type).default_nprobe(), excluded));
      } else {
        EXPECT_GE(Overlap(next10, Rows(got), 10), 0.8);
      }
    }
  }
}

TEST_F(AnnIndexTest, FilterExcludingEverythingReturnsNothing) {
  MarkTable marks;
  marks.EnsureSize(kVideos);
  RowFilter filter(&marks);
  for (int32_t row = 0; row < kVideos; ++row) filter.Exclude(row);
  for (const char* type : kTypes) {
    EXPECT_TRUE(Search(Index(type), Query(0), K(10), &filter).empty()) << type;
    EXPECT_TRUE(Exact(Index(type), Query(0), 10, &filter).empty()) << type;
  }
}

TEST_F(AnnIndexTest, KLargerThanSizeReturnsEveryRow) {
  constexpr int64_t kFew = 50;
  const std::vector<float> x(Videos().begin(), Videos().begin() + kFew * kDim);
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    IndexSpec spec;
    spec.set_type(type);
    auto index = AnnIndex::Build(x.data(), kFew, kDim, &spec);
    ASSERT_TRUE(index.ok()) << index.status();
    SearchOptions options = K(100);
    options.nprobe = 1000;  // IVF: every list, so every row is reachable
    const std::vector<Hit> got = Search(**index, Query(3), options);
    ExpectWellFormed(got, kFew);
    EXPECT_EQ(got.size(), size_t(kFew));
    const std::vector<Hit> exact = Exact(**index, Query(3), 1000);
    EXPECT_EQ(Rows(exact), Rows(BruteForce(x, Query(3), 1000)));
    EXPECT_EQ(exact.size(), size_t(kFew));
  }
}

TEST_F(AnnIndexTest, KZeroOrNegativeReturnsNothing) {
  for (const char* type : kTypes) {
    SCOPED_TRACE(type);
    SearchScratch scratch;
    for (int k : {0, -1}) {
      std::vector<Hit> out = {{1.f, 1}, {2.f, 2}};  // must be cleared
      Index(type).Search(Query(0), K(k), RowPredicate(), &scratch, &out);
      EXPECT_TRUE(out.empty());
      out = {{1.f, 1}};
      Index(type).ExactSearch(Query(0), k, RowPredicate(), &scratch, &out);
      EXPECT_TRUE(out.empty());
    }
  }
}

TEST_F(AnnIndexTest, ScratchIsReusableAcrossIndexesAndCalls) {
  constexpr int64_t kFew = 300;
  IndexSpec spec;
  spec.set_type("hnsw");
  auto small = AnnIndex::Build(Videos().data(), kFew, kDim, &spec);
  ASSERT_TRUE(small.ok()) << small.status();
  SearchScratch scratch;
  std::vector<Hit> out;
  // Alternate big and small indexes and types on one scratch; each answer
  // must equal a fresh scratch's.
  for (int round = 0; round < 300; ++round) {
    const int i = round % kQueries;
    const AnnIndex& index = round % 4 == 1   ? **small
                            : round % 4 == 3 ? Index(kTypes[(round / 4) % 3])
                                             : Index("hnsw");
    index.Search(Query(i), K(10), RowPredicate(), &scratch, &out);
    ASSERT_EQ(Rows(out), Rows(Search(index, Query(i), K(10)))) << "round " << round;
  }
}

TEST_F(AnnIndexTest, ConcurrentSearchesAgree) {
  std::vector<std::vector<int32_t>> want(kQueries);
  for (int i = 0; i < kQueries; ++i) {
    want[i] = Rows(Search(Index("hnsw"), Query(i), K(20)));
  }
  std::vector<std::vector<std::vector<int32_t>>> got(
      2, std::vector<std::vector<int32_t>>(kQueries));
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      SearchScratch scratch;
      std::vector<Hit> out;
      for (int rep = 0; rep < 3; ++rep) {
        for (int i = 0; i < kQueries; ++i) {
          Index("hnsw").Search(Query(i), K(20), RowPredicate(), &scratch, &out);
          got[t][i] = Rows(out);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(got[0], want);
  EXPECT_EQ(got[1], want);
}

TEST(MarkTableTest, MarksClearEachGeneration) {
  MarkTable marks;
  marks.EnsureSize(10);
  EXPECT_EQ(marks.size(), 10u);
  for (int32_t r = 0; r < 10; ++r) EXPECT_FALSE(marks.Marked(r));
  marks.Mark(3);
  EXPECT_TRUE(marks.Marked(3));
  EXPECT_FALSE(marks.Marked(4));
  marks.NextGeneration();
  EXPECT_FALSE(marks.Marked(3));
  marks.Mark(4);
  marks.EnsureSize(12);
  for (int32_t r = 0; r < 12; ++r) EXPECT_FALSE(marks.Marked(r));
}

TEST(MarkTableTest, GenerationWraparoundLeavesNoStaleMarks) {
  constexpr int32_t kRows = 7;
  MarkTable marks;
  marks.EnsureSize(kRows);
  // Row 0 marked only in the very first generation: its tag must never match
  // a later generation, including after the counter wraps (every 255).
  marks.Mark(0);
  for (int gen = 0; gen < 1000; ++gen) {
    marks.NextGeneration();
    for (int32_t r = 0; r < kRows; ++r) {
      ASSERT_FALSE(marks.Marked(r)) << "generation " << gen << " row " << r;
    }
    // Mark a changing subset so every tag value gets written.
    for (int32_t r = 1; r < kRows; ++r) {
      if ((gen + r) % 3 != 0) marks.Mark(r);
    }
  }
}

TEST(MarkTableTest, RowFilterCountsDistinctRowsAndStartsEmpty) {
  MarkTable marks;
  marks.EnsureSize(100);
  for (int round = 0; round < 600; ++round) {
    RowFilter filter(&marks);
    for (int32_t r = 0; r < 100; ++r) ASSERT_FALSE(filter.Excluded(r)) << round;
    filter.Exclude(round % 100);
    filter.Exclude(round % 100);
    filter.Exclude((round + 1) % 100);
    EXPECT_EQ(filter.count(), 2u);
    EXPECT_TRUE(filter.Excluded(round % 100));
    EXPECT_FALSE(filter.Excluded((round + 2) % 100));
  }
}

TEST_F(AnnIndexTest, LoadRefusesOtherIndexType) {
  struct Case {
    const char* file;
    const char* spec;
  };
  for (const Case& c : {Case{"ivf", "hnsw"}, Case{"hnsw", "ivf"}, Case{"flat", "hnsw"},
                        Case{"hnsw", "flat"}, Case{"ivf", "flat"}, Case{"flat", "ivf"}}) {
    SCOPED_TRACE(std::string(c.file) + " as " + c.spec);
    IndexSpec spec = Spec(c.file);
    spec.set_type(c.spec);
    auto loaded = AnnIndex::Load(Path(c.file), spec, kDim, kVideos);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(Path(c.file)));
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr("different kind of FAISS index than the manifest's '" +
                          std::string(c.spec) + "'"));
  }
}

TEST_F(AnnIndexTest, LoadRefusesUnknownSpecType) {
  IndexSpec spec;
  spec.set_type("pq");
  auto loaded = AnnIndex::Load(Path("flat"), spec, kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("'pq'"));
}

TEST_F(AnnIndexTest, LoadRefusesDimensionMismatch) {
  for (const char* type : kTypes) {
    auto loaded = AnnIndex::Load(Path(type), Spec(type), kDim - 1, kVideos);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << type;
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr(Path(type) + ": dimension 32 differs from the manifest's 31"));
  }
}

TEST_F(AnnIndexTest, LoadRefusesSizeMismatch) {
  for (const char* type : kTypes) {
    auto loaded = AnnIndex::Load(Path(type), Spec(type), kDim, kVideos - 1);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << type;
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr(Path(type) + ": holds 5000 vectors but the bundle has 4999"));
  }
}

TEST_F(AnnIndexTest, LoadMissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.Sub("absent.faiss");
  auto loaded = AnnIndex::Load(path, Spec("flat"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
}

TEST_F(AnnIndexTest, LoadRefusesGarbage) {
  TempDir dir;
  const std::string path = dir.Sub("garbage.faiss");
  std::mt19937_64 rng(3);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  for (const std::string& contents :
       {bytes, std::string(), std::string("IHNf"), std::string("not an index")}) {
    WriteFile(path, contents);
    auto loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kVideos);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << loaded.status();
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
  }
}

// ASan's operator new reports running out of memory and aborts instead of
// throwing std::bad_alloc, so the out-of-memory case cannot run under it.
#if defined(__SANITIZE_ADDRESS__)
#define FEEDRANK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FEEDRANK_ASAN 1
#endif
#endif

TEST_F(AnnIndexTest, ALengthBeyondTheFileIsRefusedBeforeAnythingIsAllocated) {
  TempDir dir;
  // A flat index file whose vector table claims more floats than the file
  // holds: 2^38 (FAISS's reader would allocate a terabyte before reading),
  // and 2^27 (half a gigabyte: it would allocate and zero it, then fail).
  // Load checks every length against the bytes left first, so neither is
  // allocated, and the error says which length is wrong.
  const std::string path = dir.Sub("huge.faiss");
  faiss::IndexFlatIP flat(kDim);
  flat.add(10, Videos().data());
  faiss::write_index(&flat, path.c_str());
  const std::string good = testing::ReadFile(path);
  // Header: fourcc 4, d 4, ntotal 8, two dummies 16, is_trained 1, metric 4.
  constexpr size_t kCodesSizeAt = 37;
  ASSERT_GT(good.size(), kCodesSizeAt + 8);
  IndexSpec spec;
  spec.set_type("flat");
  for (uint64_t claimed : {uint64_t{1} << 38, uint64_t{1} << 27}) {
    std::string bytes = good;
    std::memcpy(&bytes[kCodesSizeAt], &claimed, sizeof(claimed));
    WriteFile(path, bytes);
    auto loaded = AnnIndex::Load(path, spec, kDim, 10);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << loaded.status();
    EXPECT_THAT(std::string(loaded.status().message()),
                HasSubstr(absl::StrCat("flat codes claim ", claimed,
                                       " entries, more than the file holds")));
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
  }
  // The file as written loads.
  WriteFile(path, good);
  EXPECT_TRUE(AnnIndex::Load(path, spec, kDim, 10).ok());
}

TEST_F(AnnIndexTest, ErrorsAreMappedByCause) {
  TempDir dir;
  IndexSpec spec;
  spec.set_type("flat");
  // An index file that is a directory is not "not found".
  auto directory = AnnIndex::Load(dir.path(), spec, kDim, 10);
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kFailedPrecondition);
  // A read that fails keeps the file system's code (an interrupted load).
  std::atomic<bool> stop{true};
  InterruptibleFileSystem stopped(FileSystem::Real(), &stop);
  EXPECT_EQ(
      AnnIndex::Load(Path("flat"), Spec("flat"), kDim, kVideos, stopped).status().code(),
      absl::StatusCode::kCancelled);
}

TEST_F(AnnIndexTest, BuildRefusesZeroVectorsAndBadParametersBeforeFaissRuns) {
  std::vector<float> x(Videos().begin(), Videos().begin() + 100 * kDim);
  std::fill(x.begin() + 40 * kDim, x.begin() + 41 * kDim, 0.f);
  IndexSpec spec;
  spec.set_type("hnsw");
  auto built = AnnIndex::Build(x.data(), 100, kDim, &spec, nullptr, 1);
  EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(built.status().message()), HasSubstr("row 40 is all zeros"));
  std::vector<float> ok(Videos().begin(), Videos().begin() + 100 * kDim);
  IndexSpec ivf;
  ivf.set_type("ivf");
  ivf.set_ivf_nlist(101);
  EXPECT_THAT(
      std::string(
          AnnIndex::Build(ok.data(), 100, kDim, &ivf, nullptr, 1).status().message()),
      HasSubstr("ivf_nlist 101 exceeds the 100 vectors"));
  IndexSpec beam;
  beam.set_type("hnsw");
  beam.set_beam_width(2147483647);
  EXPECT_THAT(
      std::string(
          AnnIndex::Build(ok.data(), 100, kDim, &beam, nullptr, 1).status().message()),
      HasSubstr("index.beam_width"));
}

TEST_F(AnnIndexTest, LoadRefusesL2Metric) {
  TempDir dir;
  const std::string path = dir.Sub("l2.faiss");
  faiss::IndexFlatL2 l2(kDim);
  l2.add(kVideos, Videos().data());
  faiss::write_index(&l2, path.c_str());
  IndexSpec spec;
  spec.set_type("flat");
  auto loaded = AnnIndex::Load(path, spec, kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("inner product"));
}

TEST_F(AnnIndexTest, LoadRefusesHnswLinkOutOfRange) {
  TempDir dir;
  const std::string path = dir.Sub("bad.faiss");
  std::unique_ptr<faiss::Index> copy(faiss::read_index(Path("hnsw").c_str()));
  auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(copy.get());
  ASSERT_NE(hnsw, nullptr);
  hnsw->hnsw.neighbors[100] = kVideos + 5;
  faiss::write_index(copy.get(), path.c_str());
  auto loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("links to 5005, outside [0, 5000)"));

  hnsw->hnsw.neighbors[100] = 0;
  hnsw->hnsw.entry_point = kVideos;
  faiss::write_index(copy.get(), path.c_str());
  loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("entry point"));
}

TEST_F(AnnIndexTest, LoadRefusesIvfListIds) {
  TempDir dir;
  const std::string path = dir.Sub("bad.faiss");
  std::unique_ptr<faiss::Index> copy(faiss::read_index(Path("ivf").c_str()));
  auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(copy.get());
  ASSERT_NE(ivf, nullptr);
  auto* lists = dynamic_cast<faiss::ArrayInvertedLists*>(ivf->invlists);
  ASSERT_NE(lists, nullptr);
  size_t l = 0;
  while (lists->ids[l].size() < 2) ++l;
  const FaissId original = lists->ids[l][1];

  lists->ids[l][1] = lists->ids[l][0];
  faiss::write_index(copy.get(), path.c_str());
  auto loaded = AnnIndex::Load(path, Spec("ivf"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("appears in more than one place"));

  lists->ids[l][1] = -7;
  faiss::write_index(copy.get(), path.c_str());
  loaded = AnnIndex::Load(path, Spec("ivf"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("holds id -7"));

  lists->ids[l][1] = original;
  faiss::write_index(copy.get(), path.c_str());
  EXPECT_TRUE(AnnIndex::Load(path, Spec("ivf"), kDim, kVideos).ok());
}

TEST_F(AnnIndexTest, SearchesHnswWhoseUpperLevelsAreWiderThanLevelZero) {
  // FAISS allows any link count per level; the search's buffers must fit the
  // widest one, not level 0's.
  constexpr int64_t kFew = 2000;
  faiss::IndexHNSWFlat wide(kDim, 8, faiss::METRIC_INNER_PRODUCT);
  wide.hnsw.set_nb_neighbors(1, 40);  // level 0 keeps 2 * 8 = 16
  wide.add(kFew, Videos().data());
  ASSERT_GE(wide.hnsw.max_level, 1);
  TempDir dir;
  const std::string path = dir.Sub("wide.faiss");
  faiss::write_index(&wide, path.c_str());
  auto loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kFew);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  SearchScratch scratch;
  std::vector<Hit> approx, exact;
  double found = 0;
  for (int q = 0; q < 20; ++q) {
    const float* query = Query(q);
    (*loaded)->Search(query, SearchOptions{10, 256, 0}, RowPredicate(), &scratch,
                      &approx);
    (*loaded)->ExactSearch(query, 10, RowPredicate(), &scratch, &exact);
    ASSERT_EQ(approx.size(), 10u);
    for (const Hit& a : approx) {
      for (const Hit& e : exact) found += a.row == e.row;
    }
  }
  EXPECT_GE(found / 200, 0.9);
}

TEST_F(AnnIndexTest, LoadRefusesHnswLinkCountsNotStartingAtZero) {
  // The search reads a node's level-0 links from its first slot.
  std::unique_ptr<faiss::Index> copy(faiss::read_index(Path("hnsw").c_str()));
  auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(copy.get());
  ASSERT_NE(hnsw, nullptr);
  hnsw->hnsw.cum_nneighbor_per_level[0] = hnsw->hnsw.cum_nneighbor_per_level[1] / 2;
  TempDir dir;
  const std::string path = dir.Sub("cum.faiss");
  faiss::write_index(copy.get(), path.c_str());
  auto loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("running total"));
}

TEST_F(AnnIndexTest, LoadRefusesHnswEntryPointBelowTopLevel) {
  // The greedy walk would read the entry's links at levels it does not have.
  std::unique_ptr<faiss::Index> copy(faiss::read_index(Path("hnsw").c_str()));
  auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(copy.get());
  ASSERT_NE(hnsw, nullptr);
  ASSERT_GE(hnsw->hnsw.max_level, 1);
  int32_t last = kVideos - 1;
  while (hnsw->hnsw.levels[last] != 1) --last;
  hnsw->hnsw.entry_point = last;
  TempDir dir;
  const std::string path = dir.Sub("entry.faiss");
  faiss::write_index(copy.get(), path.c_str());
  auto loaded = AnnIndex::Load(path, Spec("hnsw"), kDim, kVideos);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("entry point"));
}

}  // namespace
}  // namespace feedrank

namespace feedrank {
namespace {

// The index files fuzz/index_fuzzer found crashing, leaking or exhausting
// memory (fuzz/corpus/index/regression-*): each is refused with an error
// naming the file, or loads and searches safely, in this build too (the fuzz targets run
// only in the clang ASan build). The first byte chooses the type, as in the fuzzer.
TEST(AnnIndexRegressionTest, FilesTheFuzzerFoundAreRefused) {
  const std::string corpus = std::string(FEEDRANK_SOURCE_DIR) + "/fuzz/corpus/index";
  int files = 0;
  int accepted = 0;
  TempDir dir;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    const std::string name = entry.path().filename();
    if (name.rfind("regression-", 0) != 0) continue;
    ++files;
    const std::string bytes = testing::ReadFile(entry.path());
    ASSERT_FALSE(bytes.empty()) << name;
    const IndexSpec spec =
        fuzz::IndexSpecForSelector(static_cast<unsigned char>(bytes[0]));
    const std::string path = dir.Sub(name + ".faiss");
    WriteFile(path, bytes.substr(1));
    auto loaded = AnnIndex::Load(path, spec, 8, 64);
    if (!loaded.ok()) {
      EXPECT_THAT(std::string(loaded.status().message()), ::testing::HasSubstr(path))
          << name;
      continue;
    }
    // Accepted (an HNSW table listing a level no node uses, with a huge link
    // count): searches stay within the graph and allocate for used levels.
    ++accepted;
    std::vector<float> q(8, 0.5f);
    SearchScratch scratch;
    std::vector<Hit> hits;
    SearchOptions options;
    options.k = 10;
    (*loaded)->Search(q.data(), options, RowPredicate(), &scratch, &hits);
    EXPECT_EQ(hits.size(), 10u) << name;
    for (const Hit& hit : hits) EXPECT_TRUE(hit.row >= 0 && hit.row < 64) << name;
  }
  EXPECT_LT(accepted, files);
  EXPECT_GE(files, 5);
}

}  // namespace
}  // namespace feedrank
