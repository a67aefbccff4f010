// Retrieval micro-benchmarks: one single-threaded query at a time against the
// bundle's index, sweeping the accuracy knob (HNSW beam width or IVF nprobe)
// and reporting latency, QPS (items_per_second) and recall@k against an exact
// scan. FAISS's own search runs on a private copy of the same index file at
// the same settings, so our loop can be compared with FAISS's directly.
//
//   retrieval_benchmark [--bundle=DIR] [--queries=N] [--hnswlib=FILE]
//                       [benchmark flags]
//
// --hnswlib (HNSW bundles): also times Debian's header-only hnswlib, built
// over the same vectors with the bundle's M and efConstruction, compiled
// with the same flags as this binary (its SIMD kernels follow -march), at
// the same beam widths (its ef). The graph is built on every core and saved
// to FILE on the first run (minutes at 1M), read from FILE after that.
//
// Queries are user embeddings (N spread over the users, default 1000); each
// timed iteration searches the next one. BM_AnnSearch also reports p50_us
// and p99_us, percentiles of the single searches (steady clock around each),
// and the data set's difficulty: lid@500 (local intrinsic dimensionality,
// higher = harder) and rc (relative contrast, nearer 1 = harder), in the
// distances of inner product reduced to Euclidean search. Recall
// is computed outside the timed loop, once per configuration, over the
// whole query set (that pass, not the timing, dominates the run time at
// large beam widths). Each benchmark runs for Google Benchmark's default
// minimum time (0.5 s, --benchmark_min_time); a 1M-video bundle takes a few
// minutes in all.
#include <benchmark/benchmark.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>
#include <hnswlib/hnswlib.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"

namespace feedrank::bench {
namespace {

constexpr int kKs[] = {100, 500};
// HNSW beam widths (efSearch); only those >= k run, since the search raises
// a smaller beam to k anyway.
constexpr int kBeamWidths[] = {128, 256, 512, 768, 1024, 1536, 2048};
constexpr int kMaxNprobe = 1024;

// Everything the retrieval benchmarks share: the index, the query set, the
// exact answers (computed on first use) and the recall of each
// configuration (computed once, whichever repetition runs first).
class RetrievalFixture {
 public:
  RetrievalFixture(const BenchBundle& bundle, int num_queries)
      : catalog_(*bundle.bundle().catalog),
        index_(bundle.bundle().catalog->index()),
        dim_(index_.dim()) {
    const Catalog& catalog = *bundle.bundle().catalog;
    if (catalog.num_users() > 0) {
      for (int32_t row : SpreadUserRows(catalog, num_queries)) {
        const float* e = catalog.user_embedding(row);
        queries_.insert(queries_.end(), e, e + dim_);
      }
    } else {
      // A bundle without users still needs queries: videos stand in.
      const int64_t n = std::min<int64_t>(num_queries, catalog.num_videos());
      for (int64_t i = 0; i < n; ++i) {
        const float* e =
            catalog.video_embedding(static_cast<int32_t>(i * catalog.num_videos() / n));
        queries_.insert(queries_.end(), e, e + dim_);
      }
    }
    num_queries_ = static_cast<int>(queries_.size() / dim_);
  }

  const AnnIndex& index() const { return index_; }
  // The difficulty measures of ComputeExact (0 before the exact answers).
  double lid() const { return lid_; }
  double relative_contrast() const { return rc_; }
  int num_queries() const { return num_queries_; }
  const float* query(int i) const { return queries_.data() + size_t(i) * dim_; }

  // Mean recall@k over the query set of the search `search`, which writes
  // the rows it returns for a query into its second argument. Cached under
  // `key`; the first call also computes the exact answers.
  using SearchFn = std::function<void(const float*, std::vector<int32_t>*)>;
  double Recall(const std::string& key, int k, const SearchFn& search) {
    if (auto it = recall_.find(key); it != recall_.end()) return it->second;
    ComputeExact();
    marks_.EnsureSize(index_.size());
    std::vector<int32_t> rows;
    double sum = 0;
    for (int q = 0; q < num_queries_; ++q) {
      const std::vector<int32_t>& exact = exact_[q];
      const size_t want = std::min<size_t>(k, exact.size());
      marks_.NextGeneration();
      for (size_t i = 0; i < want; ++i) marks_.Mark(exact[i]);
      search(query(q), &rows);
      size_t found = 0;
      for (size_t i = 0; i < rows.size() && i < want; ++i) {
        if (rows[i] >= 0 && marks_.Marked(rows[i])) ++found;
      }
      sum += want > 0 ? double(found) / double(want) : 1.0;
    }
    const double recall = num_queries_ > 0 ? sum / num_queries_ : 0;
    recall_[key] = recall;
    return recall;
  }

 private:
  // Exact top-max(k) per query. The exact order is total (ties by row), so
  // the first k of the top-500 are exactly the top-100 for k = 100.
  void ComputeExact() {
    if (!exact_.empty()) return;
    const int k_max = *std::max_element(std::begin(kKs), std::end(kKs));
    const auto start = std::chrono::steady_clock::now();
    SearchScratch scratch;
    std::vector<Hit> hits;
    exact_.resize(num_queries_);
    // Difficulty, in the distances of the usual reduction of inner product
    // to Euclidean search (every video padded to the largest norm M):
    // d_i^2 = |q|^2 + M^2 - 2 s_i. Local intrinsic dimensionality at k
    // (Amsaleg et al., KDD 2015: -1 / mean_i log(d_i / d_k); higher =
    // harder) and relative contrast (He et al., ICML 2012: RMS distance to
    // all videos over the distance to the nearest; nearer 1 = harder).
    std::vector<double> mean_video(dim_, 0.0);
    double max_norm2 = 0;
    for (int64_t i = 0; i < index_.size(); ++i) {
      const float* v = catalog_.video_embedding(static_cast<int32_t>(i));
      double norm2 = 0;
      for (int j = 0; j < dim_; ++j) {
        mean_video[j] += v[j];
        norm2 += double(v[j]) * v[j];
      }
      max_norm2 = std::max(max_norm2, norm2);
    }
    for (double& m : mean_video) m /= double(index_.size());
    double lid = 0, rc = 0;
    int counted = 0;
    for (int q = 0; q < num_queries_; ++q) {
      index_.ExactSearch(query(q), k_max, RowPredicate(), &scratch, &hits);
      for (const Hit& hit : hits) exact_[q].push_back(hit.row);
      double q2 = 0, mean_score = 0;
      for (int j = 0; j < dim_; ++j) {
        q2 += double(query(q)[j]) * query(q)[j];
        mean_score += query(q)[j] * mean_video[j];
      }
      auto distance = [&](double score) {
        return std::sqrt(std::max(1e-12, q2 + max_norm2 - 2 * score));
      };
      if (hits.size() < 2) continue;
      const double dk = distance(hits.back().score);
      double sum_log = 0;
      for (const Hit& hit : hits) sum_log += std::log(distance(hit.score) / dk);
      if (sum_log < 0) lid += -double(hits.size()) / sum_log;
      rc += distance(mean_score) / distance(hits.front().score);
      ++counted;
    }
    lid_ = counted > 0 ? lid / counted : 0;
    rc_ = counted > 0 ? rc / counted : 0;
    std::fprintf(stderr,
                 "difficulty: LID@%d %.1f, relative contrast %.3f (means over %d "
                 "queries)\n",
                 k_max, lid_, rc_, counted);
    std::fprintf(
        stderr, "exact top-%d of %d queries in %.1f s (for recall)\n", k_max,
        num_queries_,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  const Catalog& catalog_;
  const AnnIndex& index_;
  const int dim_;
  double lid_ = 0;
  double rc_ = 0;
  std::vector<float> queries_;
  int num_queries_ = 0;
  std::vector<std::vector<int32_t>> exact_;
  std::map<std::string, double> recall_;
  MarkTable marks_;
};

void HitsToRows(const std::vector<Hit>& hits, std::vector<int32_t>* rows) {
  rows->clear();
  for (const Hit& hit : hits) rows->push_back(hit.row);
}

// One AnnIndex::Search per iteration, exactly as the ranker calls it.
void BM_AnnSearch(benchmark::State& state, RetrievalFixture* fx, std::string key,
                  SearchOptions options) {
  const AnnIndex& index = fx->index();
  SearchScratch scratch;
  std::vector<Hit> hits;
  state.counters["recall@k"] =
      fx->Recall(key, options.k, [&](const float* q, std::vector<int32_t>* rows) {
        index.Search(q, options, RowPredicate(), &scratch, &hits);
        HitsToRows(hits, rows);
      });
  state.counters["lid@500"] = fx->lid();
  state.counters["rc"] = fx->relative_contrast();
  int q = 0;
  std::vector<double> latencies_us;
  latencies_us.reserve(state.max_iterations);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    index.Search(fx->query(q), options, RowPredicate(), &scratch, &hits);
    latencies_us.push_back(std::chrono::duration<double, std::micro>(
                               std::chrono::steady_clock::now() - start)
                               .count());
    benchmark::DoNotOptimize(hits.data());
    if (++q == fx->num_queries()) q = 0;
  }
  state.SetItemsProcessed(state.iterations());
  // Percentiles of single searches (the mean hides the queries whose lists
  // or walks are long).
  state.counters["p50_us"] = Percentile(latencies_us, 0.50);
  state.counters["p99_us"] = Percentile(latencies_us, 0.99);
}

// The exact scan with the project's SIMD kernel: the latency every index must
// beat, and the cost of one recall reference answer.
void BM_ExactSearch(benchmark::State& state, RetrievalFixture* fx, int k) {
  const AnnIndex& index = fx->index();
  SearchScratch scratch;
  std::vector<Hit> hits;
  int q = 0;
  for (auto _ : state) {
    index.ExactSearch(fx->query(q), k, RowPredicate(), &scratch, &hits);
    benchmark::DoNotOptimize(hits.data());
    if (++q == fx->num_queries()) q = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// FAISS's own single-query search on a private copy of index.faiss. The copy
// is ours alone, so writing efSearch / nprobe on it is safe; it is set per
// configuration before timing.
void BM_FaissSearch(benchmark::State& state, RetrievalFixture* fx,
                    faiss::Index* faiss_index, std::string key, int k, int knob) {
  if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(faiss_index)) {
    hnsw->hnsw.efSearch = knob;
  } else if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(faiss_index)) {
    ivf->nprobe = knob;
  }
  std::vector<float> distances(k);
  std::vector<faiss::Index::idx_t> labels(k);
  state.counters["recall@k"] =
      fx->Recall(key, k, [&](const float* q, std::vector<int32_t>* rows) {
        faiss_index->search(1, q, k, distances.data(), labels.data());
        rows->assign(labels.begin(), labels.end());
      });
  int q = 0;
  for (auto _ : state) {
    faiss_index->search(1, fx->query(q), k, distances.data(), labels.data());
    benchmark::DoNotOptimize(labels.data());
    if (++q == fx->num_queries()) q = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// hnswlib over the catalogue's vectors: read from `path` when it exists,
// else built (on every core, with a progress line) and written there.
std::unique_ptr<hnswlib::HierarchicalNSW<float>> LoadOrBuildHnswlib(
    const Catalog& catalog, const IndexSpec& spec, hnswlib::SpaceInterface<float>* space,
    const std::string& path) {
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    std::fprintf(stderr, "hnswlib: reading %s\n", path.c_str());
    return std::make_unique<hnswlib::HierarchicalNSW<float>>(space, path);
  }
  const int64_t n = catalog.num_videos();
  auto index = std::make_unique<hnswlib::HierarchicalNSW<float>>(
      space, n, spec.hnsw_m(), spec.hnsw_ef_construction());
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      index->addPoint(catalog.video_embedding(static_cast<int32_t>(i)), size_t(i));
      if (i > 0 && i % 100000 == 0) {
        std::fprintf(
            stderr, "hnswlib: %lld of %lld vectors added, %.0f s\n",
            static_cast<long long>(i), static_cast<long long>(n),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                .count());
      }
    }
  };
  // The first point alone, as hnswlib's own parallel build does.
  next = 1;
  index->addPoint(catalog.video_embedding(0), 0);
  std::vector<std::thread> threads;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < cores; ++t) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
  std::fprintf(
      stderr, "hnswlib: built M %u efConstruction %u in %.0f s; writing %s\n",
      spec.hnsw_m(), spec.hnsw_ef_construction(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
      path.c_str());
  index->saveIndex(path);
  return index;
}

// hnswlib's searchKnn at ef = `ef` (its setEf writes a shared field; this
// index is only searched by one benchmark at a time).
void BM_HnswlibSearch(benchmark::State& state, RetrievalFixture* fx,
                      hnswlib::HierarchicalNSW<float>* index, std::string key, int k,
                      int ef) {
  index->setEf(ef);
  auto search = [&](const float* q, std::vector<int32_t>* rows) {
    auto heap = index->searchKnn(q, k);  // worst on top
    rows->resize(heap.size());
    for (size_t i = heap.size(); i-- > 0;) {
      (*rows)[i] = static_cast<int32_t>(heap.top().second);
      heap.pop();
    }
  };
  state.counters["recall@k"] = fx->Recall(key, k, search);
  int q = 0;
  for (auto _ : state) {
    auto heap = index->searchKnn(fx->query(q), k);
    benchmark::DoNotOptimize(heap.size());
    if (++q == fx->num_queries()) q = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void RegisterHnswlib(RetrievalFixture* fx, hnswlib::HierarchicalNSW<float>* index) {
  for (int k : kKs) {
    for (int ef : kBeamWidths) {
      if (ef < k) continue;
      const std::string name = absl::StrCat("BM_HnswlibSearch/k:", k, "/ef:", ef);
      benchmark::RegisterBenchmark(name.c_str(), BM_HnswlibSearch, fx, index, name, k, ef)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

void RegisterAll(RetrievalFixture* fx, faiss::Index* faiss_index) {
  const AnnIndex& index = fx->index();
  auto add = [](const std::string& name, auto&& fn, auto&&... args) {
    benchmark::RegisterBenchmark(name.c_str(), fn, args...)
        ->Unit(benchmark::kMicrosecond);
  };
  // The sweep of the accuracy knob for the index type: beam widths for HNSW,
  // powers of two up to nlist for IVF, nothing for a flat index.
  std::vector<int> knobs;
  const char* knob_name = nullptr;
  const char* faiss_name = nullptr;
  switch (index.type()) {
    case AnnIndex::Type::kHnsw:
      knobs.assign(std::begin(kBeamWidths), std::end(kBeamWidths));
      knob_name = "beam";
      faiss_name = "BM_FaissHnswSearch";
      break;
    case AnnIndex::Type::kIvf: {
      const int nlist = static_cast<int>(
          dynamic_cast<const faiss::IndexIVF&>(index.faiss_index()).nlist);
      for (int nprobe = 1; nprobe <= std::min(kMaxNprobe, nlist); nprobe *= 2) {
        knobs.push_back(nprobe);
      }
      knob_name = "nprobe";
      faiss_name = "BM_FaissIvfSearch";
      break;
    }
    case AnnIndex::Type::kFlat:
      break;
  }
  for (int k : kKs) {
    if (knobs.empty()) {
      const std::string name = absl::StrCat("BM_AnnSearch/k:", k);
      add(name, BM_AnnSearch, fx, name, SearchOptions{k, 0, 0});
      continue;
    }
    for (int knob : knobs) {
      if (index.type() == AnnIndex::Type::kHnsw && knob < k) continue;
      const std::string name =
          absl::StrCat("BM_AnnSearch/k:", k, "/", knob_name, ":", knob);
      SearchOptions options{k, 0, 0};
      if (index.type() == AnnIndex::Type::kHnsw) {
        options.beam_width = knob;
      } else {
        options.nprobe = knob;
      }
      add(name, BM_AnnSearch, fx, name, options);
      // bf16 scan codes: how deep the float rescoring must go.
      if (std::string(index.scan_codes()) == "bf16") {
        for (int percent : {100, 125, 150}) {
          SearchOptions shallow = options;
          shallow.rescore = k * percent / 100;
          const std::string sub = absl::StrCat(name, "/rescore:", shallow.rescore);
          add(sub, BM_AnnSearch, fx, sub, shallow);
        }
      }
    }
  }
  for (int k : kKs) {
    add(absl::StrCat("BM_ExactSearch/k:", k), BM_ExactSearch, fx, k);
  }
  if (faiss_index == nullptr) return;
  for (int k : kKs) {
    for (int knob : knobs) {
      if (index.type() == AnnIndex::Type::kHnsw && knob < k) continue;
      const std::string name = absl::StrCat(
          faiss_name, "/k:", k, "/",
          index.type() == AnnIndex::Type::kHnsw ? "ef" : "nprobe", ":", knob);
      add(name, BM_FaissSearch, fx, faiss_index, name, k, knob);
    }
  }
}

}  // namespace
}  // namespace feedrank::bench

int main(int argc, char** argv) {
  namespace fb = feedrank::bench;
  const std::string dir = fb::TakeFlag("bundle", &argc, argv).value_or("");
  const int num_queries = fb::TakeIntFlag("queries", 1000, &argc, argv);
  const std::string hnswlib_path = fb::TakeFlag("hnswlib", &argc, argv).value_or("");
  fb::InitBenchmarks(&argc, argv);
  // Single-threaded measurements: FAISS must not open an OpenMP team of its
  // own inside a search.
  omp_set_num_threads(1);

  auto bundle = fb::BenchBundle::LoadOrSynthesize(dir);
  fb::AddBundleContext(*bundle);
  fb::RetrievalFixture fixture(*bundle, num_queries);
  if (fixture.num_queries() == 0) {
    std::fprintf(stderr, "error: no queries (--queries=%d, bundle without rows)\n",
                 num_queries);
    return 1;
  }
  benchmark::AddCustomContext(
      "queries", absl::StrCat(fixture.num_queries(), " user embeddings, cycled"));

  // A second copy of the index, read by FAISS itself, for FAISS's search.
  std::unique_ptr<faiss::Index> faiss_index;
  if (fixture.index().type() != feedrank::AnnIndex::Type::kFlat) {
    const std::string path = feedrank::BundlePath(bundle->dir(), feedrank::kIndexFile);
    try {
      faiss_index.reset(faiss::read_index(path.c_str()));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s: %s\n", path.c_str(), e.what());
      return 1;
    }
  }
  fb::RegisterAll(&fixture, faiss_index.get());
  // Declared here so that it outlives the benchmarks that search it.
  hnswlib::InnerProductSpace space(fixture.index().dim());
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnswlib_index;
  if (!hnswlib_path.empty()) {
    if (fixture.index().type() != feedrank::AnnIndex::Type::kHnsw) {
      std::fprintf(stderr, "error: --hnswlib needs an HNSW bundle\n");
      return 1;
    }
    const feedrank::IndexSpec& spec = bundle->bundle().manifest.index();
    try {
      hnswlib_index =
          fb::LoadOrBuildHnswlib(*bundle->bundle().catalog, spec, &space, hnswlib_path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: hnswlib: %s: %s\n", hnswlib_path.c_str(), e.what());
      return 1;
    }
    benchmark::AddCustomContext(
        "hnswlib", absl::StrCat("0.6.2 (Debian), M ", spec.hnsw_m(), ", efConstruction ",
                                spec.hnsw_ef_construction(), ", ", hnswlib_path));
    fb::RegisterHnswlib(&fixture, hnswlib_index.get());
  }
  return fb::RunBenchmarks();
}
