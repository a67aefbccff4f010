// AnnIndex: approximate (or exact) maximum-inner-product search over the
// video embeddings. The graph or inverted lists are built and stored by FAISS
// (write_index format); searching runs the project's own loops over FAISS's
// structures, because FAISS 1.7.3 cannot vary the HNSW beam width per call
// without writing a shared field, and its Debian build has no SIMD kernels.
//
// Thread-safety: an AnnIndex is immutable after Create/Load; Search may be
// called from any number of threads at once, each with its own SearchScratch.
// This is the only class that calls FAISS (linked privately to this module);
// FAISS exceptions become Status by cause.
#ifndef FEEDRANK_EMBEDDINGS_ANN_INDEX_H_
#define FEEDRANK_EMBEDDINGS_ANN_INDEX_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/bundle.pb.h"

namespace faiss {
struct Index;
struct IndexHNSW;
struct IndexIVFFlat;
struct IndexFlat;
}  // namespace faiss

namespace feedrank {

// One search result: a row of the video table and its inner product with the
// query.
struct Hit {
  float score;
  int32_t row;
};

// Orders hits best first; ties by lower row, so results are deterministic.
inline bool BetterHit(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.row < b.row);
}
// BetterHit as a function object, for sorts and heaps: passed as a function
// pointer it is called indirectly on every comparison (measured at 30% of
// an IVF search), as an object it is inlined.
struct HitIsBetter {
  bool operator()(const Hit& a, const Hit& b) const { return BetterHit(a, b); }
};

// A per-thread table of marks over rows [0, size()), reset in O(1) per use by
// advancing a generation counter (a full clear every 255 uses). Grows, never
// shrinks, so one table serves catalogues of different sizes without
// reallocating once it has seen the largest.
class MarkTable {
 public:
  // Makes the table cover at least `n` rows (and clears all marks when it
  // grows).
  void EnsureSize(size_t n);
  // Clears all marks.
  void NextGeneration();
  bool Marked(int32_t row) const { return tags_[row] == generation_; }
  void Mark(int32_t row) { tags_[row] = generation_; }
  size_t size() const { return tags_.size(); }

 private:
  std::vector<uint8_t> tags_;
  uint8_t generation_ = 1;
};

// Rows one request excludes (e.g. videos the user has seen), marked in a
// MarkTable that the caller owns and must not touch while the filter is in
// use.
class RowFilter {
 public:
  // REQUIRES: `marks` covers every row that Exclude and Excluded receive.
  explicit RowFilter(MarkTable* marks) : marks_(marks) { marks_->NextGeneration(); }
  void Exclude(int32_t row) {
    if (!marks_->Marked(row)) {
      marks_->Mark(row);
      ++count_;
    }
  }
  bool Excluded(int32_t row) const { return marks_->Marked(row); }
  // Number of distinct rows excluded.
  size_t count() const { return count_; }

 private:
  MarkTable* marks_;
  size_t count_ = 0;
};

// An immutable set of rows as a bitmap, e.g. the tombstones of a catalogue
// view (deleted or replaced videos). Thread-safe once built.
class RowBitmap {
 public:
  RowBitmap() = default;
  // An empty set over rows [0, n).
  explicit RowBitmap(size_t n) : words_((n + 63) / 64, 0), size_(n) {}
  // Grows the set's range to [0, n) (rows added are absent). REQUIRES:
  // n >= size().
  void Grow(size_t n) {
    words_.resize((n + 63) / 64, 0);
    size_ = n;
  }
  // REQUIRES: row < size().
  void Insert(int32_t row) {
    uint64_t& word = words_[size_t(row) >> 6];
    const uint64_t bit = uint64_t{1} << (row & 63);
    count_ += (word & bit) == 0;
    word |= bit;
  }
  bool Contains(int32_t row) const {
    return size_t(row) < size_ && (words_[size_t(row) >> 6] >> (row & 63)) & 1;
  }
  size_t count() const { return count_; }
  size_t size() const { return size_; }

 private:
  std::vector<uint64_t> words_;
  size_t size_ = 0;
  size_t count_ = 0;
};

// Which rows a search may return: every row that none of its parts
// excludes (a request's RowFilter, a view's tombstones...). Parts are
// borrowed and must outlive the predicate. Cheap to copy; evaluated inside
// the search, so excluded rows never take a result slot.
class RowPredicate {
 public:
  static constexpr int kMaxParts = 4;

  // Accepts every row.
  RowPredicate() = default;

  // Also rejects the rows of `filter` / `bitmap` (null = nothing). At most
  // kMaxParts parts in all.
  RowPredicate& Exclude(const RowFilter* filter);
  RowPredicate& Exclude(const RowBitmap* bitmap);

  bool Accepts(int32_t row) const {
    for (int i = 0; i < num_filters_; ++i) {
      if (filters_[i]->Excluded(row)) return false;
    }
    for (int i = 0; i < num_bitmaps_; ++i) {
      if (bitmaps_[i]->Contains(row)) return false;
    }
    return true;
  }
  bool accepts_all() const { return num_filters_ + num_bitmaps_ == 0; }
  // At least this many distinct rows are rejected (the largest part).
  size_t min_rejected() const;

 private:
  const RowFilter* filters_[kMaxParts] = {};
  const RowBitmap* bitmaps_[kMaxParts] = {};
  int num_filters_ = 0;
  int num_bitmaps_ = 0;
};

// Scratch memory of one search: reused across searches on one thread, so a
// search allocates nothing once warm. Not thread-safe.
struct SearchScratch {
  MarkTable visited;
  std::vector<Hit> candidates;        // HNSW: unexpanded nodes (max-heap).
  std::vector<Hit> beam;              // HNSW: best `beam_width` seen (min-heap).
  std::vector<Hit> results;           // best k passing the filter.
  std::vector<int32_t> batch;         // ids whose distances are computed together.
  std::vector<float> scores;          // distances of `batch`, or of a block of rows.
  std::vector<Hit> probes;            // IVF: scored centroids.
  std::vector<Hit> approx;            // IVF bf16: best of the bf16 scan, to rescore.
  std::vector<const float*> rescore;  // IVF bf16: their float vectors.
};

// Per-search knobs. Zero means "the index's default".
struct SearchOptions {
  // Number of results wanted.
  int k = 100;
  // HNSW beam width (efSearch); raised to k when lower.
  int beam_width = 0;
  // IVF: lists probed.
  int nprobe = 0;
  // IVF with bf16 scan codes: candidates of the bf16 scan rescored in
  // float (at least k); 0 = k + k/4.
  int rescore = 0;
};

// What a search did, for debug output and metrics.
struct SearchStats {
  // HNSW: the beam width used (after defaults and clamps); 0 otherwise.
  int beam_width = 0;
  // IVF: the lists probed (after widening, see Search); 0 otherwise.
  int nprobe = 0;
  // The search fell back to an exact scan because the predicate rejects
  // (nearly) everything the approximate search would reach.
  bool exact_fallback = false;
};

class AnnIndex {
 public:
  enum class Type { kHnsw, kIvf, kFlat };

  // Reports build progress: (vectors done, vectors total).
  using Progress = std::function<void(int64_t, int64_t)>;

  // Builds an index of `spec.type` ("hnsw", "ivf", "flat") over `x` (size
  // n * d, row i is video row i), with FAISS on `threads` OpenMP threads
  // (0 = every core). With one thread the result is the same bytes for the
  // same input; HNSW built in parallel links nodes in a timing-dependent
  // order (an equally good graph, not the same one). Unset spec
  // fields get defaults (written back into *spec): hnsw_m 32,
  // hnsw_ef_construction 80, beam_width 256; ivf_nlist ~4*sqrt(n),
  // ivf_nprobe nlist/16.
  // Every vector must have a non-zero norm (a zero vector has the same inner
  // product, 0, with every query, and a catalogue of them degenerates the
  // HNSW build).
  // Errors: InvalidArgument for an unknown type, a bad parameter or a zero
  // vector (named by row); ResourceExhausted when memory runs out; Internal
  // for a FAISS failure on valid input.
  // `cancel` (may be null), checked between chunks of vectors added, stops
  // the build with Cancelled once it is true (a server shutting down
  // during a compaction).
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Build(
      const float* x, int64_t n, int d, IndexSpec* spec,
      const Progress& progress = nullptr, int threads = 0,
      const std::atomic<bool>* cancel = nullptr);

  // Reads a FAISS index file through `fs` and checks it against the
  // manifest: type, metric (inner product), dimension, size, and the graph
  // or lists themselves (every link and id within [0, n), each id listed
  // once). Errors, each naming `path`: those of FileSystem (NotFound,
  // PermissionDenied, FailedPrecondition for a non-regular file, Cancelled
  // by an InterruptibleFileSystem), ResourceExhausted when memory runs out,
  // InvalidArgument for content that is not such an index.
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Load(
      const std::string& path, const IndexSpec& spec, int d, int64_t n,
      FileSystem& fs = *FileSystem::Real());

  ~AnnIndex();
  AnnIndex(const AnnIndex&) = delete;
  AnnIndex& operator=(const AnnIndex&) = delete;

  // Writes the index to `path` (through a temporary file renamed over it).
  absl::Status Write(const std::string& path, FileSystem& fs = *FileSystem::Real()) const;

  // The k best rows for query `q` (size d) that `accept` accepts, best
  // first, into *out. Fewer than k only when fewer than k rows pass: when
  // HNSW reaches fewer passing rows (a predicate rejecting most of the
  // catalogue) it falls back to an exact scan, and a predicate that leaves
  // at most 2k rows goes to the scan at once; IVF doubles nprobe until its
  // lists hold k passing rows. Allocation-free once `scratch` is warm.
  // `stats` (may be null) says what ran.
  void Search(const float* q, const SearchOptions& options, const RowPredicate& accept,
              SearchScratch* scratch, std::vector<Hit>* out,
              SearchStats* stats = nullptr) const;

  // The HNSW beam width or IVF probe count a search with `options` uses
  // (0 for what does not apply to this index type).
  SearchStats EffectiveOptions(const SearchOptions& options) const;

  // Exact search by scanning every vector; for tests, recall benchmarks and
  // the fallback above.
  void ExactSearch(const float* q, int k, const RowPredicate& accept,
                   SearchScratch* scratch, std::vector<Hit>* out) const;

  // Checks that the index holds exactly `x` (size n * d) with row i at label
  // i. Errors: InvalidArgument naming the first differing row.
  absl::Status VerifyVectors(const float* x) const;

  // Reads one byte of every memory page the searches use, so the first
  // requests after a load do not pay for first touches. Returns a checksum
  // (to keep the reads).
  uint64_t TouchMemory() const;

  // Row-major vectors (size n * d) stored by the index when it keeps them in
  // row order (HNSW, flat), else null. Lets the catalog share them instead
  // of holding a second copy.
  const float* row_vectors() const;

  Type type() const { return type_; }
  int dim() const { return d_; }
  int64_t size() const { return n_; }
  int default_beam_width() const { return default_beam_width_; }
  int default_nprobe() const { return default_nprobe_; }
  // "bf16" when IVF lists are scanned in bf16, else "float".
  const char* scan_codes() const { return bf16_lists_.empty() ? "float" : "bf16"; }
  // The wrapped FAISS index, for tests and benchmarks that compare against
  // FAISS (they include FAISS's headers themselves).
  const faiss::Index& faiss_index() const { return *index_; }

 private:
  AnnIndex(std::unique_ptr<faiss::Index> index, Type type, int d, int64_t n,
           const IndexSpec& spec);
  absl::Status ValidateStructure(const std::string& path) const;

  // Each writes the k best accepted hits, best first, into *out.
  void SearchHnsw(const float* q, int k, int beam_width, const RowPredicate& accept,
                  SearchScratch* scratch, std::vector<Hit>* out) const;
  // `codes`: scan the bf16 copy (when there is one) and rescore the best
  // `rescore`; else the float lists (exact scores throughout).
  void SearchIvf(const float* q, int k, int nprobe, const RowPredicate& accept,
                 SearchScratch* scratch, std::vector<Hit>* out, bool codes = false,
                 int rescore = 0) const;
  // IVF, scan_codes bf16: fills bf16_lists_ and list_begin_.
  void MakeBf16Lists();
  void SearchFlat(const float* q, int k, const RowPredicate& accept,
                  SearchScratch* scratch, std::vector<Hit>* out) const;

  std::unique_ptr<faiss::Index> index_;
  Type type_;
  int d_;
  int64_t n_;
  int default_beam_width_;
  int default_nprobe_;
  // Borrowed views into index_ (set by the constructor).
  const faiss::IndexHNSW* hnsw_ = nullptr;
  const faiss::IndexIVFFlat* ivf_ = nullptr;
  const float* vectors_ = nullptr;    // HNSW storage or flat data, n * d.
  const float* centroids_ = nullptr;  // IVF, nlist * d.
  size_t max_links_ = 0;              // HNSW: most links of a node on any level.
  // IVF, scan_codes bf16: every list's vectors in bf16, list after list;
  // list l holds positions [list_begin_[l], list_begin_[l + 1]).
  std::vector<uint16_t> bf16_lists_;
  std::vector<size_t> list_begin_;
};

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_ANN_INDEX_H_
