#include "embeddings/ann_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/simd.h"

namespace feedrank {
namespace {

// Min-heap helpers: the worst hit sits at heap.front().
inline void PushTopK(std::vector<Hit>& heap, size_t k, Hit hit) {
  if (heap.size() < k) {
    heap.push_back(hit);
    std::push_heap(heap.begin(), heap.end(), BetterHit);
  } else if (BetterHit(hit, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), BetterHit);
    heap.back() = hit;
    std::push_heap(heap.begin(), heap.end(), BetterHit);
  }
}

// Max-heap order: the best hit at heap.front().
inline bool WorseHit(const Hit& a, const Hit& b) { return BetterHit(b, a); }

// Collects the k best hits of a scan in O(n + k log k) rather than a heap's
// O(n log k): hits not below the current threshold go to a buffer of up to
// 2k, which is cut back to its k best (raising the threshold) when full.
// Ties are kept until a cut, so the result equals a full sort by BetterHit.
class TopKBuffer {
 public:
  TopKBuffer(std::vector<Hit>* buffer, size_t k) : buffer_(buffer), k_(k) {
    buffer_->clear();
  }
  float threshold() const { return threshold_; }
  void Push(Hit hit) {
    if (hit.score < threshold_) return;
    buffer_->push_back(hit);
    if (buffer_->size() >= 2 * k_) Cut();
  }
  // The k best, best first, into `out`.
  void Finish(std::vector<Hit>* out) {
    if (buffer_->size() > k_) Cut();
    std::sort(buffer_->begin(), buffer_->end(), BetterHit);
    out->assign(buffer_->begin(), buffer_->end());
  }

 private:
  void Cut() {
    std::nth_element(buffer_->begin(), buffer_->begin() + (k_ - 1), buffer_->end(),
                     BetterHit);
    buffer_->resize(k_);
    // Everything before position k-1 is at least as good as it.
    threshold_ = (*buffer_)[k_ - 1].score;
  }

  std::vector<Hit>* buffer_;
  size_t k_;
  float threshold_ = -std::numeric_limits<float>::infinity();
};

absl::StatusOr<AnnIndex::Type> ParseType(const std::string& name) {
  if (name == "hnsw") return AnnIndex::Type::kHnsw;
  if (name == "ivf") return AnnIndex::Type::kIvf;
  if (name == "flat") return AnnIndex::Type::kFlat;
  return absl::InvalidArgumentError(absl::StrCat(
      "index type '", name, "' is not one of hnsw, ivf, flat"));
}

// Runs `fn`, turning any FAISS (or allocation) exception into a Status.
template <typename Fn>
absl::Status CatchFaiss(const std::string& what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

void MarkTable::Reset(size_t n) {
  tags_.assign(n, 0);
  generation_ = 1;
}

void MarkTable::NextGeneration() {
  if (++generation_ == 0) {
    std::fill(tags_.begin(), tags_.end(), 0);
    generation_ = 1;
  }
}

AnnIndex::AnnIndex(std::unique_ptr<faiss::Index> index, Type type, int d,
                   int64_t n, const IndexSpec& spec)
    : index_(std::move(index)),
      type_(type),
      d_(d),
      n_(n),
      default_beam_width_(spec.beam_width() > 0 ? spec.beam_width() : 256),
      default_nprobe_(spec.ivf_nprobe() > 0 ? spec.ivf_nprobe() : 1) {
  switch (type_) {
    case Type::kHnsw: {
      hnsw_ = dynamic_cast<const faiss::IndexHNSW*>(index_.get());
      vectors_ = static_cast<const faiss::IndexFlat*>(hnsw_->storage)->get_xb();
      const std::vector<int>& cum = hnsw_->hnsw.cum_nneighbor_per_level;
      for (size_t l = 0; l + 1 < cum.size(); ++l) {
        max_links_ = std::max<size_t>(max_links_, cum[l + 1] - cum[l]);
      }
      break;
    }
    case Type::kIvf:
      ivf_ = dynamic_cast<const faiss::IndexIVFFlat*>(index_.get());
      centroids_ = static_cast<const faiss::IndexFlat*>(ivf_->quantizer)->get_xb();
      break;
    case Type::kFlat:
      vectors_ = static_cast<const faiss::IndexFlat*>(index_.get())->get_xb();
      break;
  }
}

AnnIndex::~AnnIndex() = default;

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Build(
    const float* x, int64_t n, int d, IndexSpec* spec, const Progress& progress,
    int threads) {
  auto type = ParseType(spec->type());
  if (!type.ok()) return type.status();
  if (n <= 0 || d <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot index ", n, " vectors of dimension ", d));
  }
  if (n > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " videos is more than the 2^31-1 an index holds"));
  }
  // OpenMP's thread count is per calling thread: set it here, restore after.
  const int previous_threads = omp_get_max_threads();
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
  struct Restore {
    int n;
    ~Restore() { omp_set_num_threads(n); }
  } restore{previous_threads};
  std::unique_ptr<faiss::Index> index;
  const int64_t chunk = std::max<int64_t>(10000, n / 100);
  auto add_in_chunks = [&](faiss::Index* target) {
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t count = std::min(chunk, n - start);
      target->add(count, x + start * d);
      if (progress) progress(start + count, n);
    }
  };
  absl::Status status = CatchFaiss("building index", [&] {
    switch (*type) {
      case Type::kHnsw: {
        if (spec->hnsw_m() == 0) spec->set_hnsw_m(32);
        if (spec->hnsw_ef_construction() == 0) spec->set_hnsw_ef_construction(80);
        if (spec->beam_width() == 0) spec->set_beam_width(256);
        auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(
            d, static_cast<int>(spec->hnsw_m()), faiss::METRIC_INNER_PRODUCT);
        hnsw->hnsw.efConstruction = static_cast<int>(spec->hnsw_ef_construction());
        hnsw->hnsw.efSearch = static_cast<int>(spec->beam_width());
        add_in_chunks(hnsw.get());
        index = std::move(hnsw);
        break;
      }
      case Type::kIvf: {
        if (spec->ivf_nlist() == 0) {
          const int64_t nlist = static_cast<int64_t>(4 * std::sqrt(double(n)));
          spec->set_ivf_nlist(static_cast<uint32_t>(std::clamp<int64_t>(nlist, 1, n)));
        }
        if (spec->ivf_nprobe() == 0) {
          spec->set_ivf_nprobe(std::max<uint32_t>(1, spec->ivf_nlist() / 16));
        }
        if (spec->ivf_nlist() > n) {
          throw std::invalid_argument(absl::StrCat(
              "ivf_nlist ", spec->ivf_nlist(), " exceeds the ", n, " vectors"));
        }
        auto quantizer = new faiss::IndexFlatIP(d);
        auto ivf = std::make_unique<faiss::IndexIVFFlat>(
            quantizer, d, spec->ivf_nlist(), faiss::METRIC_INNER_PRODUCT);
        ivf->own_fields = true;
        ivf->cp.seed = 1234;
        // k-means on an evenly spaced sample of at most 50 points per list.
        const int64_t sample = std::min<int64_t>(n, 50 * int64_t(spec->ivf_nlist()));
        std::vector<float> train(sample * d);
        for (int64_t i = 0; i < sample; ++i) {
          std::memcpy(&train[i * d], x + (i * n / sample) * d, d * sizeof(float));
        }
        ivf->train(sample, train.data());
        ivf->nprobe = spec->ivf_nprobe();
        add_in_chunks(ivf.get());
        index = std::move(ivf);
        break;
      }
      case Type::kFlat: {
        auto flat = std::make_unique<faiss::IndexFlatIP>(d);
        add_in_chunks(flat.get());
        index = std::move(flat);
        break;
      }
    }
  });
  if (!status.ok()) return status;
  return std::unique_ptr<AnnIndex>(
      new AnnIndex(std::move(index), *type, d, n, *spec));
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Load(const std::string& path,
                                                         const IndexSpec& spec,
                                                         int d, int64_t n) {
  auto type = ParseType(spec.type());
  if (!type.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": manifest ", type.status().message()));
  }
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
  } else {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open file"));
  }
  std::unique_ptr<faiss::Index> index;
  absl::Status status = CatchFaiss(path, [&] {
    index.reset(faiss::read_index(path.c_str()));
  });
  if (!status.ok()) return status;
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  bool type_ok = false;
  switch (*type) {
    case Type::kHnsw: {
      auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index.get());
      type_ok = hnsw != nullptr &&
                dynamic_cast<faiss::IndexFlat*>(hnsw->storage) != nullptr;
      break;
    }
    case Type::kIvf: {
      auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(index.get());
      type_ok = ivf != nullptr &&
                dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) != nullptr;
      break;
    }
    case Type::kFlat:
      type_ok = dynamic_cast<faiss::IndexFlat*>(index.get()) != nullptr &&
                dynamic_cast<faiss::IndexHNSW*>(index.get()) == nullptr;
      break;
  }
  if (!type_ok) {
    return bad("holds a different kind of FAISS index than the manifest's '",
               spec.type(), "' (expected ",
               *type == Type::kHnsw  ? "IndexHNSWFlat"
               : *type == Type::kIvf ? "IndexIVFFlat"
                                     : "IndexFlatIP",
               ")");
  }
  if (index->metric_type != faiss::METRIC_INNER_PRODUCT) {
    return bad("metric is not inner product");
  }
  if (index->d != d) {
    return bad("dimension ", index->d, " differs from the manifest's ", d);
  }
  if (index->ntotal != n) {
    return bad("holds ", index->ntotal, " vectors but the bundle has ", n,
               " videos");
  }
  std::unique_ptr<AnnIndex> ann(new AnnIndex(std::move(index), *type, d, n, spec));
  absl::Status structure = ann->ValidateStructure(path);
  if (!structure.ok()) return structure;
  return ann;
}

absl::Status AnnIndex::ValidateStructure(const std::string& path) const {
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  switch (type_) {
    case Type::kHnsw: {
      const faiss::HNSW& g = hnsw_->hnsw;
      const auto* storage = static_cast<const faiss::IndexFlat*>(hnsw_->storage);
      if (storage->ntotal != n_ || storage->codes.size() != size_t(n_) * d_ * 4) {
        return bad("HNSW storage holds ", storage->ntotal, " vectors, expected ", n_);
      }
      if (g.levels.size() != size_t(n_) || g.offsets.size() != size_t(n_) + 1 ||
          g.cum_nneighbor_per_level.size() < 2) {
        return bad("HNSW graph is inconsistent with ", n_, " vectors");
      }
      // The search reads level l's links at [cum[l], cum[l + 1]).
      const std::vector<int>& cum = g.cum_nneighbor_per_level;
      if (cum[0] != 0 || !std::is_sorted(cum.begin(), cum.end())) {
        return bad("HNSW link counts per level are not a running total from 0");
      }
      if (n_ > 0 && (g.entry_point < 0 || g.entry_point >= n_ || g.max_level < 0)) {
        return bad("HNSW entry point ", g.entry_point, " is out of range");
      }
      if (g.offsets.back() != g.neighbors.size()) {
        return bad("HNSW link table size does not match its offsets");
      }
      for (int64_t i = 0; i < n_; ++i) {
        const int levels = g.levels[i];
        if (levels < 1 || levels > g.max_level + 1 ||
            levels + 1 > int(g.cum_nneighbor_per_level.size()) ||
            g.offsets[i + 1] - g.offsets[i] !=
                size_t(g.cum_nneighbor_per_level[levels])) {
          return bad("HNSW node ", i, " has an inconsistent level or link count");
        }
      }
      if (n_ > 0 && g.levels[g.entry_point] != g.max_level + 1) {
        return bad("HNSW entry point ", g.entry_point, " is not on the top level ",
                   g.max_level);
      }
      // Every link in range, and a link on level l leads to a node that
      // exists on level l (the search walks it there).
      for (int64_t i = 0; i < n_; ++i) {
        for (int level = 0; level < g.levels[i]; ++level) {
          const size_t begin = g.offsets[i] + g.cum_nneighbor_per_level[level];
          const size_t end = g.offsets[i] + g.cum_nneighbor_per_level[level + 1];
          for (size_t j = begin; j < end; ++j) {
            const int32_t v = g.neighbors[j];
            if (v < -1 || v >= n_) {
              return bad("HNSW node ", i, " links to ", v, ", outside [0, ", n_, ")");
            }
            if (v >= 0 && g.levels[v] <= level) {
              return bad("HNSW node ", i, " links on level ", level, " to node ", v,
                         ", which is not on that level");
            }
          }
        }
      }
      break;
    }
    case Type::kIvf: {
      const auto* quantizer = static_cast<const faiss::IndexFlat*>(ivf_->quantizer);
      if (quantizer->ntotal != int64_t(ivf_->nlist) || quantizer->d != d_ ||
          quantizer->metric_type != faiss::METRIC_INNER_PRODUCT) {
        return bad("IVF quantizer does not match its ", ivf_->nlist, " lists");
      }
      if (ivf_->code_size != size_t(d_) * sizeof(float)) {
        return bad("IVF code size ", ivf_->code_size, " is not ", d_, " floats");
      }
      std::vector<uint8_t> seen(n_, 0);
      int64_t total = 0;
      for (size_t l = 0; l < ivf_->nlist; ++l) {
        const size_t size = ivf_->invlists->list_size(l);
        const faiss::Index::idx_t* ids = ivf_->invlists->get_ids(l);
        for (size_t j = 0; j < size; ++j) {
          if (ids[j] < 0 || ids[j] >= n_) {
            return bad("IVF list ", l, " holds id ", ids[j], ", outside [0, ",
                       n_, ")");
          }
          if (seen[ids[j]]++) {
            return bad("IVF id ", ids[j], " appears in more than one place");
          }
        }
        total += size;
      }
      if (total != n_) return bad("IVF lists hold ", total, " ids, expected ", n_);
      break;
    }
    case Type::kFlat:
      break;
  }
  return absl::OkStatus();
}

absl::Status AnnIndex::Write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  absl::Status status = CatchFaiss(path, [&] {
    faiss::write_index(index_.get(), tmp.c_str());
  });
  if (!status.ok()) return status;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": rename failed"));
  }
  return absl::OkStatus();
}

absl::Status AnnIndex::VerifyVectors(const float* x) const {
  const size_t row_bytes = size_t(d_) * sizeof(float);
  auto mismatch = [&](int64_t row) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index vector of row ", row,
        " differs from the embedding table: the index was built from other "
        "embeddings"));
  };
  if (vectors_ != nullptr) {
    if (std::memcmp(vectors_, x, row_bytes * n_) != 0) {
      for (int64_t i = 0; i < n_; ++i) {
        if (std::memcmp(vectors_ + i * d_, x + i * d_, row_bytes) != 0) {
          return mismatch(i);
        }
      }
    }
    return absl::OkStatus();
  }
  for (size_t l = 0; l < ivf_->nlist; ++l) {
    const size_t size = ivf_->invlists->list_size(l);
    const faiss::Index::idx_t* ids = ivf_->invlists->get_ids(l);
    const uint8_t* codes = ivf_->invlists->get_codes(l);
    for (size_t j = 0; j < size; ++j) {
      if (std::memcmp(codes + j * row_bytes, x + ids[j] * d_, row_bytes) != 0) {
        return mismatch(ids[j]);
      }
    }
  }
  return absl::OkStatus();
}

const float* AnnIndex::row_vectors() const { return vectors_; }

uint64_t AnnIndex::TouchMemory() const {
  uint64_t sum = 0;
  auto touch = [&sum](const void* data, size_t bytes) {
    const volatile uint8_t* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < bytes; i += 4096) sum += p[i];
  };
  if (vectors_ != nullptr) touch(vectors_, size_t(n_) * d_ * sizeof(float));
  if (hnsw_ != nullptr) {
    touch(hnsw_->hnsw.neighbors.data(), hnsw_->hnsw.neighbors.size() * sizeof(int32_t));
    touch(hnsw_->hnsw.offsets.data(), hnsw_->hnsw.offsets.size() * sizeof(size_t));
  }
  if (ivf_ != nullptr) {
    for (size_t l = 0; l < ivf_->nlist; ++l) {
      touch(ivf_->invlists->get_codes(l), ivf_->invlists->list_size(l) * ivf_->code_size);
      touch(ivf_->invlists->get_ids(l), ivf_->invlists->list_size(l) * sizeof(int64_t));
    }
  }
  return sum;
}

void AnnIndex::Search(const float* q, const SearchOptions& options,
                      const RowFilter* filter, SearchScratch* scratch,
                      std::vector<Hit>* out) const {
  out->clear();
  const int k = static_cast<int>(std::min<int64_t>(options.k, n_));
  if (k <= 0) return;
  switch (type_) {
    case Type::kHnsw:
      SearchHnsw(q, k,
                 std::max(k, options.beam_width > 0 ? options.beam_width
                                                    : default_beam_width_),
                 filter, scratch, out);
      break;
    case Type::kIvf:
      SearchIvf(q, k, options.nprobe > 0 ? options.nprobe : default_nprobe_,
                filter, scratch, out);
      break;
    case Type::kFlat:
      SearchFlat(q, k, filter, scratch, out);
      break;
  }
}

void AnnIndex::ExactSearch(const float* q, int k, const RowFilter* filter,
                           SearchScratch* scratch, std::vector<Hit>* out) const {
  out->clear();
  k = static_cast<int>(std::min<int64_t>(k, n_));
  if (k <= 0) return;
  if (vectors_ != nullptr) {
    SearchFlat(q, k, filter, scratch, out);
  } else {
    // IVF keeps vectors in list order: probing every list is exact.
    SearchIvf(q, k, static_cast<int>(ivf_->nlist), filter, scratch, out);
  }
}

void AnnIndex::SearchFlat(const float* q, int k, const RowFilter* filter,
                          SearchScratch* scratch, std::vector<Hit>* out) const {
  constexpr int64_t kBlock = 1024;
  TopKBuffer top(&scratch->results, k);
  scratch->scores.resize(kBlock);
  float* scores = scratch->scores.data();
  for (int64_t start = 0; start < n_; start += kBlock) {
    const int64_t count = std::min(kBlock, n_ - start);
    simd::DotRows(q, vectors_ + start * d_, count, d_, scores);
    for (int64_t i = 0; i < count; ++i) {
      if (scores[i] < top.threshold()) continue;
      const int32_t row = static_cast<int32_t>(start + i);
      if (filter != nullptr && filter->Excluded(row)) continue;
      top.Push(Hit{scores[i], row});
    }
  }
  top.Finish(out);
}

void AnnIndex::SearchIvf(const float* q, int k, int nprobe, const RowFilter* filter,
                         SearchScratch* scratch, std::vector<Hit>* out) const {
  const int nlist = static_cast<int>(ivf_->nlist);
  nprobe = std::clamp(nprobe, 1, nlist);
  // Rank the centroids and keep the nprobe best.
  std::vector<float>& scores = scratch->scores;
  scores.resize(std::max<size_t>(nlist, 1024));
  simd::DotRows(q, centroids_, nlist, d_, scores.data());
  std::vector<Hit>& probes = scratch->probes;
  probes.clear();
  for (int l = 0; l < nlist; ++l) PushTopK(probes, nprobe, Hit{scores[l], l});

  TopKBuffer top(&scratch->results, k);
  const faiss::InvertedLists& lists = *ivf_->invlists;
  for (const Hit& probe : probes) {
    const size_t size = lists.list_size(probe.row);
    const float* codes = reinterpret_cast<const float*>(lists.get_codes(probe.row));
    const faiss::Index::idx_t* ids = lists.get_ids(probe.row);
    if (scores.size() < size) scores.resize(size);
    simd::DotRows(q, codes, size, d_, scores.data());
    for (size_t j = 0; j < size; ++j) {
      if (scores[j] < top.threshold()) continue;
      const int32_t row = static_cast<int32_t>(ids[j]);
      if (filter != nullptr && filter->Excluded(row)) continue;
      top.Push(Hit{scores[j], row});
    }
  }
  top.Finish(out);
}

// Beam search as in HNSW (Malkov & Yashunin), on FAISS's graph: greedy descent
// through the upper levels, then a beam of `beam_width` at level 0. As in
// FAISS, every visited node competes for the k results (so the filter never
// blocks navigation), while only the beam steers the walk.
void AnnIndex::SearchHnsw(const float* q, int k, int beam_width, const RowFilter* filter,
                          SearchScratch* scratch, std::vector<Hit>* out) const {
  const faiss::HNSW& g = hnsw_->hnsw;
  const int32_t* links = g.neighbors.data();
  const size_t d = d_;
  MarkTable& visited = scratch->visited;
  if (visited.size() != size_t(n_)) visited.Reset(n_);
  visited.NextGeneration();

  // Upper levels: greedy walk to the best node.
  int32_t entry = g.entry_point;
  float entry_score = simd::Dot(q, vectors_ + size_t(entry) * d, d);
  std::vector<int32_t>& batch = scratch->batch;
  std::vector<float>& scores = scratch->scores;
  const size_t max_links = max_links_;
  if (batch.size() < max_links) batch.resize(max_links);
  if (scores.size() < max_links) scores.resize(max_links);
  for (int level = g.max_level; level >= 1; --level) {
    for (bool moved = true; moved;) {
      moved = false;
      const size_t begin = g.offsets[entry] + g.cum_nneighbor_per_level[level];
      const size_t end = g.offsets[entry] + g.cum_nneighbor_per_level[level + 1];
      size_t count = 0;
      for (size_t j = begin; j < end && links[j] >= 0; ++j) batch[count++] = links[j];
      simd::DotGather(q, vectors_, batch.data(), count, d, scores.data());
      for (size_t j = 0; j < count; ++j) {
        if (scores[j] > entry_score) {
          entry_score = scores[j];
          entry = batch[j];
          moved = true;
        }
      }
    }
  }

  // Level 0: beam search.
  std::vector<Hit>& candidates = scratch->candidates;  // best on top
  std::vector<Hit>& beam = scratch->beam;              // worst on top
  TopKBuffer results(&scratch->results, k);
  candidates.clear();
  beam.clear();
  const Hit start{entry_score, entry};
  visited.Mark(entry);
  candidates.push_back(start);
  beam.push_back(start);
  if (filter == nullptr || !filter->Excluded(entry)) results.Push(start);

  while (!candidates.empty()) {
    const Hit current = candidates.front();
    if (beam.size() >= size_t(beam_width) && current.score < beam.front().score) {
      break;
    }
    std::pop_heap(candidates.begin(), candidates.end(), WorseHit);
    candidates.pop_back();

    const size_t begin = g.offsets[current.row];
    const size_t end = begin + g.cum_nneighbor_per_level[1];
    size_t count = 0;
    for (size_t j = begin; j < end; ++j) {
      const int32_t v = links[j];
      if (v < 0) break;
      if (visited.Marked(v)) continue;
      visited.Mark(v);
      batch[count++] = v;
    }
    simd::DotGather(q, vectors_, batch.data(), count, d, scores.data());
    for (size_t j = 0; j < count; ++j) {
      const Hit hit{scores[j], batch[j]};
      if (beam.size() < size_t(beam_width) || hit.score > beam.front().score) {
        candidates.push_back(hit);
        std::push_heap(candidates.begin(), candidates.end(), WorseHit);
        PushTopK(beam, beam_width, hit);
      }
      if (filter == nullptr || !filter->Excluded(hit.row)) results.Push(hit);
    }
  }
  results.Finish(out);
}

}  // namespace feedrank
