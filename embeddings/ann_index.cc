#include "embeddings/ann_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/simd.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

// Min-heap helpers: the worst hit sits at heap.front().
inline void PushTopK(std::vector<Hit>& heap, size_t k, Hit hit) {
  if (heap.size() < k) {
    heap.push_back(hit);
    std::push_heap(heap.begin(), heap.end(), HitIsBetter());
  } else if (BetterHit(hit, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), HitIsBetter());
    heap.back() = hit;
    std::push_heap(heap.begin(), heap.end(), HitIsBetter());
  }
}

// Max-heap order: the best hit at heap.front().
struct HitIsWorse {
  bool operator()(const Hit& a, const Hit& b) const { return BetterHit(b, a); }
};

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
  // The k best, in no particular order, into `out`.
  void FinishUnsorted(std::vector<Hit>* out) {
    if (buffer_->size() > k_) Cut();
    out->assign(buffer_->begin(), buffer_->end());
  }
  // The k best, best first, into `out`.
  void Finish(std::vector<Hit>* out) {
    if (buffer_->size() > k_) Cut();
    std::sort(buffer_->begin(), buffer_->end(), HitIsBetter());
    out->assign(buffer_->begin(), buffer_->end());
  }

 private:
  void Cut() {
    std::nth_element(buffer_->begin(), buffer_->begin() + (k_ - 1), buffer_->end(),
                     HitIsBetter());
    buffer_->resize(k_);
    // Everything before position k-1 is at least as good as it.
    threshold_ = (*buffer_)[k_ - 1].score;
  }

  std::vector<Hit>* buffer_;
  size_t k_;
  float threshold_ = -std::numeric_limits<float>::infinity();
};

// bf16 scans rescore k + k/4 candidates in float by default: at 1M, on
// the topic and the hard data sets, recall@500 equals the float scan's at
// every nprobe measured (docs/BENCHMARKS.md).
size_t DefaultRescore(size_t k) { return k + k / 4; }

absl::StatusOr<AnnIndex::Type> ParseType(const std::string& name) {
  if (name == "hnsw") return AnnIndex::Type::kHnsw;
  if (name == "ivf") return AnnIndex::Type::kIvf;
  if (name == "flat") return AnnIndex::Type::kFlat;
  return absl::InvalidArgumentError(
      absl::StrCat("index type '", name, "' is not one of hnsw, ivf, flat"));
}

// Runs `fn`, turning exceptions into a Status by cause: out of memory ->
// ResourceExhausted; a status our own I/O adapters raised -> that status;
// a FAISS error -> `faiss_code` (what a FAISS error means depends on the
// call: bad file content when reading, a broken invariant when building
// from validated input); anything else -> Internal.
struct StatusException {
  absl::Status status;
};

template <typename Fn>
absl::Status CatchFaiss(const std::string& what, absl::StatusCode faiss_code, Fn&& fn) {
  try {
    fn();
  } catch (const StatusException& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory"));
  } catch (const faiss::FaissException& e) {
    return absl::Status(faiss_code, absl::StrCat(what, ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
  return absl::OkStatus();
}

// FAISS reads through this: the bytes come from a feedrank ReadableFile
// (regular files only, interruptible, fault-injectable in tests). A read
// error is rethrown as its Status, so the caller sees the file system's code.
class FileReader : public faiss::IOReader {
 public:
  explicit FileReader(ReadableFile* file) : file_(file) { name = file->path(); }
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0 || nitems == 0) return 0;
    size_t bytes;
    if (__builtin_mul_overflow(size, nitems, &bytes)) return 0;
    auto got = file_->Read(ptr, bytes);
    if (!got.ok()) throw StatusException{got.status()};
    return *got / size;
  }

 private:
  ReadableFile* file_;
};

class FileWriter : public faiss::IOWriter {
 public:
  explicit FileWriter(WritableFile* file) : file_(file) { name = file->path(); }
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    absl::Status status =
        file_->Append(absl::string_view(static_cast<const char*>(ptr), size * nitems));
    if (!status.ok()) throw StatusException{status};
    return nitems;
  }

 private:
  WritableFile* file_;
};

// Walks the layout of a FAISS 1.7.3 index file of the kinds feedrank writes
// (IndexFlatIP "IxFI", IndexIVFFlat "IwFl" with "ilar" lists, IndexHNSWFlat
// "IHNf"), checking every length field against the bytes left in the file
// before FAISS's reader sees it. FAISS resizes a vector to the length it
// reads before reading its contents, so a corrupt length would otherwise
// allocate (and zero) that much memory: up to terabytes, which aborts the
// process or gets it killed for memory while it is serving the previous
// bundle. Found by fuzz/index_fuzzer. Other kinds of index are left to
// FAISS (Load refuses them after reading).
// A fourcc as text, bytes outside printable ASCII as \xNN.
std::string Printable(const std::string& fourcc) {
  std::string out;
  for (unsigned char c : fourcc) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

class LayoutWalker {
 public:
  explicit LayoutWalker(ReadableFile* file) : file_(file), left_(file->size()) {}

  absl::Status Index(int depth = 0) {
    if (depth > 2) return Bad("sub-indexes nested deeper than FAISS writes them");
    uint32_t fourcc;
    RETURN_IF_ERROR(Get(&fourcc));
    const std::string h(reinterpret_cast<const char*>(&fourcc), 4);
    if (h == "IxFI" || h == "IxF2" || h == "IxFl") {
      RETURN_IF_ERROR(Header());
      return Vector(sizeof(float), "flat codes");
    }
    if (h == "IwFl") {
      RETURN_IF_ERROR(Header());
      RETURN_IF_ERROR(Skip(2 * sizeof(uint64_t)));  // nlist, nprobe
      RETURN_IF_ERROR(Index(depth + 1));            // the quantizer
      char direct_map;
      RETURN_IF_ERROR(Get(&direct_map));
      RETURN_IF_ERROR(Vector(sizeof(int64_t), "direct map"));
      if (direct_map == 2)
        RETURN_IF_ERROR(Vector(2 * sizeof(int64_t), "direct map hash"));
      return InvertedLists();
    }
    if (h == "IHNf") {
      RETURN_IF_ERROR(Header());
      RETURN_IF_ERROR(Vector(sizeof(double), "HNSW level probabilities"));
      RETURN_IF_ERROR(Vector(sizeof(int32_t), "HNSW neighbours per level"));
      RETURN_IF_ERROR(Vector(sizeof(int32_t), "HNSW levels"));
      RETURN_IF_ERROR(Vector(sizeof(uint64_t), "HNSW offsets"));
      RETURN_IF_ERROR(Vector(sizeof(int32_t), "HNSW neighbours"));
      RETURN_IF_ERROR(Skip(5 * sizeof(int32_t)));  // entry point .. upper_beam
      return Index(depth + 1);                     // the storage
    }
    // Another kind (FAISS has dozens, each with its own layout): Load would
    // refuse it after reading, so it is refused before FAISS reads it.
    return absl::InvalidArgumentError(
        absl::StrCat("holds a kind of FAISS index feedrank does not load (", Printable(h),
                     "); feedrank writes IndexFlatIP, IndexIVFFlat and IndexHNSWFlat"));
  }

 private:
  absl::Status Bad(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("not a FAISS index of a kind feedrank writes, or truncated: ", what,
                     " at byte ", file_->size() - left_));
  }
  template <typename T>
  absl::Status Get(T* out) {
    if (left_ < sizeof(T)) return Bad("the file ends");
    ASSIGN_OR_RETURN(size_t got, file_->Read(out, sizeof(T)));
    if (got != sizeof(T)) return Bad("the file ends");
    left_ -= sizeof(T);
    return absl::OkStatus();
  }
  absl::Status Skip(uint64_t bytes) {
    if (bytes > left_) return Bad("the file ends");
    char buf[64 << 10];
    left_ -= bytes;
    while (bytes > 0) {
      ASSIGN_OR_RETURN(size_t got,
                       file_->Read(buf, std::min<uint64_t>(bytes, sizeof(buf))));
      if (got == 0) return Bad("the file ends");
      bytes -= got;
    }
    return absl::OkStatus();
  }
  // A FAISS vector: its length (uint64) then length x `elem` bytes.
  absl::Status Vector(uint64_t elem, const char* what) {
    uint64_t n;
    RETURN_IF_ERROR(Get(&n));
    if (n > left_ / elem) {
      return Bad(absl::StrCat(what, " claim ", n, " entries, more than the file holds"));
    }
    return Skip(n * elem);
  }
  // d, ntotal, two dummies, is_trained, metric.
  absl::Status Header() {
    RETURN_IF_ERROR(Skip(sizeof(int32_t) + 3 * sizeof(int64_t) + 1));
    // FAISS stores the number into its MetricType enum as read; anything but
    // inner product (0) or L2 (1) is not a metric of an index feedrank
    // writes, and reading such an enum back is undefined behaviour.
    int32_t metric;
    RETURN_IF_ERROR(Get(&metric));
    if (metric != 0 && metric != 1) return Bad(absl::StrCat("metric ", metric));
    return absl::OkStatus();
  }
  absl::Status InvertedLists() {
    uint32_t fourcc;
    RETURN_IF_ERROR(Get(&fourcc));
    const std::string h(reinterpret_cast<const char*>(&fourcc), 4);
    if (h == "il00") return absl::OkStatus();  // refused by ValidateStructure
    if (h != "ilar") return Bad("inverted lists of a kind feedrank does not write");
    uint64_t nlist, code_size;
    RETURN_IF_ERROR(Get(&nlist));
    RETURN_IF_ERROR(Get(&code_size));
    if (nlist > left_ || code_size > left_) return Bad("inverted lists' sizes");
    uint32_t list_type;
    RETURN_IF_ERROR(Get(&list_type));
    const std::string t(reinterpret_cast<const char*>(&list_type), 4);
    std::vector<uint64_t> sizes(nlist, 0);
    if (t == "full") {
      uint64_t n;
      RETURN_IF_ERROR(Get(&n));
      if (n != nlist) return Bad("inverted list count");
      for (uint64_t& size : sizes) RETURN_IF_ERROR(Get(&size));
    } else if (t == "sprs") {
      uint64_t n;
      RETURN_IF_ERROR(Get(&n));
      if (n % 2 != 0 || n > left_ / sizeof(uint64_t)) return Bad("sparse list sizes");
      for (uint64_t i = 0; i < n; i += 2) {
        uint64_t list, size;
        RETURN_IF_ERROR(Get(&list));
        RETURN_IF_ERROR(Get(&size));
        if (list >= nlist) return Bad("sparse list number");
        sizes[list] = size;
      }
    } else {
      return Bad("inverted list layout");
    }
    // Each list: size x code_size bytes of codes, then size ids.
    const uint64_t per_entry = code_size + sizeof(int64_t);
    for (uint64_t size : sizes) {
      if (size > left_ / per_entry) {
        return Bad(absl::StrCat("an inverted list claims ", size,
                                " entries, more than the file holds"));
      }
      RETURN_IF_ERROR(Skip(size * per_entry));
    }
    return absl::OkStatus();
  }

  ReadableFile* file_;
  uint64_t left_;
};

}  // namespace

void MarkTable::EnsureSize(size_t n) {
  if (tags_.size() >= n) return;
  tags_.assign(n, 0);
  generation_ = 1;
}

void MarkTable::NextGeneration() {
  if (++generation_ == 0) {
    std::fill(tags_.begin(), tags_.end(), 0);
    generation_ = 1;
  }
}

RowPredicate& RowPredicate::Exclude(const RowFilter* filter) {
  if (filter != nullptr) {
    assert(num_filters_ < kMaxParts);
    filters_[num_filters_++] = filter;
  }
  return *this;
}

RowPredicate& RowPredicate::Exclude(const RowBitmap* bitmap) {
  if (bitmap != nullptr && bitmap->count() > 0) {
    assert(num_bitmaps_ < kMaxParts);
    bitmaps_[num_bitmaps_++] = bitmap;
  }
  return *this;
}

size_t RowPredicate::min_rejected() const {
  size_t most = 0;
  for (int i = 0; i < num_filters_; ++i) most = std::max(most, filters_[i]->count());
  for (int i = 0; i < num_bitmaps_; ++i) most = std::max(most, bitmaps_[i]->count());
  return most;
}

AnnIndex::AnnIndex(std::unique_ptr<faiss::Index> index, Type type, int d, int64_t n,
                   const IndexSpec& spec)
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
      // Over the levels nodes use (0 .. max_level): the table may list more,
      // and a file could make an unused one claim any size. ValidateStructure
      // ties the used levels' counts to the link table.
      const std::vector<int>& cum = hnsw_->hnsw.cum_nneighbor_per_level;
      const size_t used = std::max(hnsw_->hnsw.max_level, 0) + 1;
      for (size_t l = 0; l + 1 < cum.size() && l < used; ++l) {
        // In 64 bits: an unsorted table (refused by ValidateStructure, which
        // runs after this) must not overflow here first.
        const int64_t links = int64_t{cum[l + 1]} - cum[l];
        if (links > 0) max_links_ = std::max<size_t>(max_links_, size_t(links));
      }
      break;
    }
    case Type::kIvf:
      ivf_ = dynamic_cast<const faiss::IndexIVFFlat*>(index_.get());
      centroids_ = static_cast<const faiss::IndexFlat*>(ivf_->quantizer)->get_xb();
      if (spec.scan_codes() == "bf16") MakeBf16Lists();
      break;
    case Type::kFlat:
      vectors_ = static_cast<const faiss::IndexFlat*>(index_.get())->get_xb();
      break;
  }
}

AnnIndex::~AnnIndex() = default;

void AnnIndex::MakeBf16Lists() {
  const faiss::InvertedLists& lists = *ivf_->invlists;
  list_begin_.assign(ivf_->nlist + 1, 0);
  for (size_t l = 0; l < ivf_->nlist; ++l) {
    list_begin_[l + 1] = list_begin_[l] + lists.list_size(l);
  }
  bf16_lists_.resize(list_begin_.back() * d_);
  for (size_t l = 0; l < ivf_->nlist; ++l) {
    const float* codes = reinterpret_cast<const float*>(lists.get_codes(l));
    uint16_t* out = bf16_lists_.data() + list_begin_[l] * d_;
    for (size_t i = 0; i < lists.list_size(l) * d_; ++i) {
      out[i] = simd::FloatToBf16(codes[i]);
    }
  }
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Build(
    const float* x, int64_t n, int d, IndexSpec* spec, const Progress& progress,
    int threads, const std::atomic<bool>* cancel) {
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
  for (int64_t i = 0; i < n; ++i) {
    const float* v = x + i * d;
    if (simd::Dot(v, v, d) == 0.f) {
      return absl::InvalidArgumentError(
          absl::StrCat("embedding of row ", i,
                       " is all zeros; every video needs a non-zero "
                       "embedding (a zero vector scores 0 against every user)"));
    }
  }
  // Defaults and parameter checks, all before FAISS runs.
  switch (*type) {
    case Type::kHnsw:
      if (spec->hnsw_m() == 0) spec->set_hnsw_m(32);
      if (spec->hnsw_ef_construction() == 0) spec->set_hnsw_ef_construction(80);
      if (spec->beam_width() == 0) spec->set_beam_width(256);
      break;
    case Type::kIvf:
      if (spec->ivf_nlist() == 0) {
        const int64_t nlist = static_cast<int64_t>(4 * std::sqrt(double(n)));
        spec->set_ivf_nlist(static_cast<uint32_t>(std::clamp<int64_t>(nlist, 1, n)));
      }
      if (spec->ivf_nprobe() == 0) {
        spec->set_ivf_nprobe(std::max<uint32_t>(1, spec->ivf_nlist() / 16));
      }
      if (spec->ivf_nlist() > n) {
        return absl::InvalidArgumentError(absl::StrCat("ivf_nlist ", spec->ivf_nlist(),
                                                       " exceeds the ", n, " vectors"));
      }
      break;
    case Type::kFlat:
      break;
  }
  RETURN_IF_ERROR(ValidateIndexSpec(*spec));
  // OpenMP's thread count is per calling thread: set it here, restore after.
  const int previous_threads = omp_get_max_threads();
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
  struct Restore {
    int n;
    ~Restore() { omp_set_num_threads(n); }
  } restore{previous_threads};
  std::unique_ptr<faiss::Index> index;
  const int64_t chunk = std::max<int64_t>(10000, n / 100);
  bool cancelled = false;
  auto add_in_chunks = [&](faiss::Index* target) {
    for (int64_t start = 0; start < n; start += chunk) {
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        cancelled = true;
        return;
      }
      const int64_t count = std::min(chunk, n - start);
      target->add(count, x + start * d);
      if (progress) progress(start + count, n);
    }
  };
  absl::Status status = CatchFaiss("building index", absl::StatusCode::kInternal, [&] {
    switch (*type) {
      case Type::kHnsw: {
        auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(
            d, static_cast<int>(spec->hnsw_m()), faiss::METRIC_INNER_PRODUCT);
        hnsw->hnsw.efConstruction = static_cast<int>(spec->hnsw_ef_construction());
        hnsw->hnsw.efSearch = static_cast<int>(spec->beam_width());
        add_in_chunks(hnsw.get());
        index = std::move(hnsw);
        break;
      }
      case Type::kIvf: {
        auto quantizer = std::make_unique<faiss::IndexFlatIP>(d);
        auto ivf = std::make_unique<faiss::IndexIVFFlat>(
            quantizer.get(), d, spec->ivf_nlist(), faiss::METRIC_INNER_PRODUCT);
        quantizer.release();
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
  if (cancelled) return absl::CancelledError("index build stopped");
  return std::unique_ptr<AnnIndex>(new AnnIndex(std::move(index), *type, d, n, *spec));
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Load(const std::string& path,
                                                         const IndexSpec& spec, int d,
                                                         int64_t n, FileSystem& fs) {
  auto type = ParseType(spec.type());
  if (!type.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": manifest ", type.status().message()));
  }
  {
    ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, fs.OpenForRead(path));
    absl::Status layout = LayoutWalker(file.get()).Index();
    if (!layout.ok()) {
      return absl::Status(layout.code(), absl::StrCat(path, ": ", layout.message()));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, fs.OpenForRead(path));
  std::unique_ptr<faiss::Index> index;
  FileReader reader(file.get());
  absl::Status status = CatchFaiss(path, absl::StatusCode::kInvalidArgument,
                                   [&] { index.reset(faiss::read_index(&reader)); });
  if (!status.ok()) return status;
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  bool type_ok = false;
  switch (*type) {
    case Type::kHnsw: {
      auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index.get());
      type_ok =
          hnsw != nullptr && dynamic_cast<faiss::IndexFlat*>(hnsw->storage) != nullptr;
      break;
    }
    case Type::kIvf: {
      auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(index.get());
      type_ok =
          ivf != nullptr && dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) != nullptr;
      break;
    }
    case Type::kFlat:
      type_ok = dynamic_cast<faiss::IndexFlat*>(index.get()) != nullptr &&
                dynamic_cast<faiss::IndexHNSW*>(index.get()) == nullptr;
      break;
  }
  if (!type_ok) {
    return bad("holds a different kind of FAISS index than the manifest's '", spec.type(),
               "' (expected ",
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
    return bad("holds ", index->ntotal, " vectors but the bundle has ", n, " videos");
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
      // A file may hold "no lists" (FAISS's il00), or lists of another
      // count or code size than the index claims.
      if (ivf_->invlists == nullptr || ivf_->invlists->nlist != ivf_->nlist ||
          ivf_->invlists->code_size != ivf_->code_size) {
        return bad("IVF index has no inverted lists matching its ", ivf_->nlist,
                   " lists of ", ivf_->code_size, "-byte codes");
      }
      std::vector<uint8_t> seen(n_, 0);
      int64_t total = 0;
      for (size_t l = 0; l < ivf_->nlist; ++l) {
        const size_t size = ivf_->invlists->list_size(l);
        const faiss::Index::idx_t* ids = ivf_->invlists->get_ids(l);
        for (size_t j = 0; j < size; ++j) {
          if (ids[j] < 0 || ids[j] >= n_) {
            return bad("IVF list ", l, " holds id ", ids[j], ", outside [0, ", n_, ")");
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

absl::Status AnnIndex::Write(const std::string& path, FileSystem& fs) const {
  return WriteFileAtomically(fs, path, [&](WritableFile& file) {
    FileWriter writer(&file);
    return CatchFaiss(path, absl::StatusCode::kInternal,
                      [&] { faiss::write_index(index_.get(), &writer); });
  });
}

absl::Status AnnIndex::VerifyVectors(const float* x) const {
  const size_t row_bytes = size_t(d_) * sizeof(float);
  auto mismatch = [&](int64_t row) {
    return absl::InvalidArgumentError(
        absl::StrCat("index vector of row ", row,
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
    touch(bf16_lists_.data(), bf16_lists_.size() * sizeof(uint16_t));
  }
  return sum;
}

SearchStats AnnIndex::EffectiveOptions(const SearchOptions& options) const {
  SearchStats stats;
  const int k = static_cast<int>(std::clamp<int64_t>(options.k, 0, n_));
  switch (type_) {
    case Type::kHnsw:
      stats.beam_width =
          std::max(k, options.beam_width > 0 ? options.beam_width : default_beam_width_);
      break;
    case Type::kIvf:
      stats.nprobe = std::clamp(options.nprobe > 0 ? options.nprobe : default_nprobe_, 1,
                                static_cast<int>(ivf_->nlist));
      break;
    case Type::kFlat:
      break;
  }
  return stats;
}

void AnnIndex::Search(const float* q, const SearchOptions& options,
                      const RowPredicate& accept, SearchScratch* scratch,
                      std::vector<Hit>* out, SearchStats* stats) const {
  out->clear();
  SearchStats local = EffectiveOptions(options);
  const int k = static_cast<int>(std::clamp<int64_t>(options.k, 0, n_));
  if (k > 0) {
    // When at most 2k rows can pass, a graph walk or a few lists would
    // reach only some of them: scan.
    const int64_t may_pass = n_ - static_cast<int64_t>(accept.min_rejected());
    if (type_ != Type::kFlat && may_pass <= 2 * int64_t{k}) {
      local.exact_fallback = true;
    } else {
      switch (type_) {
        case Type::kHnsw:
          SearchHnsw(q, k, local.beam_width, accept, scratch, out);
          // Short of k: the walk reached too few accepted rows (a selective
          // predicate). The page contract is "full unless the catalogue
          // cannot fill it", so scan.
          local.exact_fallback = out->size() < size_t(k);
          break;
        case Type::kIvf: {
          // Short of k: the probed lists hold too few accepted rows. Probe
          // twice as many until they do (all lists = exact).
          const int nlist = static_cast<int>(ivf_->nlist);
          SearchIvf(q, k, local.nprobe, accept, scratch, out, true, options.rescore);
          while (out->size() < size_t(k) && local.nprobe < nlist) {
            local.nprobe = std::min(nlist, 2 * local.nprobe);
            SearchIvf(q, k, local.nprobe, accept, scratch, out, true, options.rescore);
          }
          break;
        }
        case Type::kFlat:
          SearchFlat(q, k, accept, scratch, out);
          break;
      }
    }
    if (local.exact_fallback) ExactSearch(q, k, accept, scratch, out);
  }
  if (stats != nullptr) *stats = local;
}

void AnnIndex::ExactSearch(const float* q, int k, const RowPredicate& accept,
                           SearchScratch* scratch, std::vector<Hit>* out) const {
  out->clear();
  k = static_cast<int>(std::min<int64_t>(k, n_));
  if (k <= 0) return;
  if (vectors_ != nullptr) {
    SearchFlat(q, k, accept, scratch, out);
  } else {
    // IVF keeps vectors in list order: probing every list is exact.
    SearchIvf(q, k, static_cast<int>(ivf_->nlist), accept, scratch, out);
  }
}

void AnnIndex::SearchFlat(const float* q, int k, const RowPredicate& accept,
                          SearchScratch* scratch, std::vector<Hit>* out) const {
  constexpr int64_t kBlock = 1024;
  const bool all = accept.accepts_all();
  TopKBuffer top(&scratch->results, k);
  scratch->scores.resize(kBlock);
  float* scores = scratch->scores.data();
  for (int64_t start = 0; start < n_; start += kBlock) {
    const int64_t count = std::min(kBlock, n_ - start);
    simd::DotRows(q, vectors_ + start * d_, count, d_, scores);
    for (int64_t i = 0; i < count; ++i) {
      if (scores[i] < top.threshold()) continue;
      const int32_t row = static_cast<int32_t>(start + i);
      if (!all && !accept.Accepts(row)) continue;
      top.Push(Hit{scores[i], row});
    }
  }
  top.Finish(out);
}

void AnnIndex::SearchIvf(const float* q, int k, int nprobe, const RowPredicate& accept,
                         SearchScratch* scratch, std::vector<Hit>* out, bool codes,
                         int rescore) const {
  const int nlist = static_cast<int>(ivf_->nlist);
  nprobe = std::clamp(nprobe, 1, nlist);
  const bool all = accept.accepts_all();
  // Rank the centroids and keep the nprobe best.
  std::vector<float>& scores = scratch->scores;
  scores.resize(std::max<size_t>(nlist, 1024));
  simd::DotRows(q, centroids_, nlist, d_, scores.data());
  std::vector<Hit>& probes = scratch->probes;
  probes.clear();
  for (int l = 0; l < nlist; ++l) PushTopK(probes, nprobe, Hit{scores[l], l});
  // Nearest lists first: the top-k threshold rises sooner, so fewer hits
  // are pushed and cut (the result does not depend on the order).
  std::sort(probes.begin(), probes.end(), HitIsBetter());

  const faiss::InvertedLists& lists = *ivf_->invlists;
  if (!codes || bf16_lists_.empty()) {
    TopKBuffer top(&scratch->results, k);
    for (const Hit& probe : probes) {
      const size_t size = lists.list_size(probe.row);
      const float* vectors = reinterpret_cast<const float*>(lists.get_codes(probe.row));
      const faiss::Index::idx_t* ids = lists.get_ids(probe.row);
      if (scores.size() < size) scores.resize(size);
      simd::DotRows(q, vectors, size, d_, scores.data());
      for (size_t j = 0; j < size; ++j) {
        if (scores[j] < top.threshold()) continue;
        const int32_t row = static_cast<int32_t>(ids[j]);
        if (!all && !accept.Accepts(row)) continue;
        top.Push(Hit{scores[j], row});
      }
    }
    top.Finish(out);
    return;
  }

  // bf16: the best `want` by their bf16 scores, as list positions...
  const size_t want = rescore > 0 ? std::max<size_t>(rescore, k) : DefaultRescore(k);
  TopKBuffer approx(&scratch->results, want);
  for (const Hit& probe : probes) {
    const size_t begin = list_begin_[probe.row];
    const size_t size = list_begin_[probe.row + 1] - begin;
    const faiss::Index::idx_t* ids = lists.get_ids(probe.row);
    if (scores.size() < size) scores.resize(size);
    simd::DotRowsBf16(q, bf16_lists_.data() + begin * d_, size, d_, scores.data());
    for (size_t j = 0; j < size; ++j) {
      if (scores[j] < approx.threshold()) continue;
      if (!all && !accept.Accepts(static_cast<int32_t>(ids[j]))) continue;
      approx.Push(Hit{scores[j], static_cast<int32_t>(begin + j)});
    }
  }
  approx.FinishUnsorted(&scratch->approx);
  // ... then rescored in float from the lists themselves (scattered reads:
  // located first, then fetched a few ahead of use).
  const std::vector<Hit>& best = scratch->approx;
  std::vector<const float*>& vectors = scratch->rescore;
  std::vector<int32_t>& rows = scratch->batch;
  vectors.resize(best.size());
  rows.resize(best.size());
  for (size_t i = 0; i < best.size(); ++i) {
    const size_t position = size_t(best[i].row);
    const size_t list =
        std::upper_bound(list_begin_.begin(), list_begin_.end(), position) -
        list_begin_.begin() - 1;
    const size_t j = position - list_begin_[list];
    vectors[i] = reinterpret_cast<const float*>(lists.get_codes(list)) + j * d_;
    rows[i] = static_cast<int32_t>(lists.get_ids(list)[j]);
  }
  // (Written out, not as a helper: GCC 12 deletes calls to a function that
  // only prefetches.)
  constexpr size_t kAhead = 6;
  for (size_t i = 0; i < std::min(kAhead, best.size()); ++i) {
    for (size_t off = 0; off < size_t(d_); off += 16)
      __builtin_prefetch(vectors[i] + off);
  }
  TopKBuffer top(&scratch->results, k);
  for (size_t i = 0; i < best.size(); ++i) {
    if (i + kAhead < best.size()) {
      const float* next = vectors[i + kAhead];
      for (size_t off = 0; off < size_t(d_); off += 16) __builtin_prefetch(next + off);
    }
    top.Push(Hit{simd::Dot(q, vectors[i], d_), rows[i]});
  }
  top.Finish(out);
}

// Beam search as in HNSW (Malkov & Yashunin), on FAISS's graph: greedy descent
// through the upper levels, then a beam of `beam_width` at level 0. As in
// FAISS, every visited node competes for the k results (so a predicate never
// blocks navigation), while only the beam steers the walk.
void AnnIndex::SearchHnsw(const float* q, int k, int beam_width,
                          const RowPredicate& accept, SearchScratch* scratch,
                          std::vector<Hit>* out) const {
  const faiss::HNSW& g = hnsw_->hnsw;
  const int32_t* links = g.neighbors.data();
  const size_t d = d_;
  MarkTable& visited = scratch->visited;
  visited.EnsureSize(n_);
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
  const bool all = accept.accepts_all();
  if (all || accept.Accepts(entry)) results.Push(start);

  while (!candidates.empty()) {
    const Hit current = candidates.front();
    if (beam.size() >= size_t(beam_width) && current.score < beam.front().score) {
      break;
    }
    std::pop_heap(candidates.begin(), candidates.end(), HitIsWorse());
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
        std::push_heap(candidates.begin(), candidates.end(), HitIsWorse());
        PushTopK(beam, beam_width, hit);
      }
      if (all || accept.Accepts(hit.row)) results.Push(hit);
    }
  }
  results.Finish(out);
}

}  // namespace feedrank
