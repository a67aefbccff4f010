// AnnIndex: approximate (or exact) maximum-inner-product search over the
// video embeddings. The graph or inverted lists are built and stored by FAISS
// (write_index format); searching runs the project's own loops over FAISS's
// structures, because FAISS 1.7.3 cannot vary the HNSW beam width per call
// without writing a shared field, and its Debian build has no SIMD kernels.
//
// Thread-safety: an AnnIndex is immutable after Create/Load; Search may be
// called from any number of threads at once, each with its own SearchScratch.
// This is the only class that calls FAISS; FAISS exceptions become Status.
#ifndef FEEDRANK_EMBEDDINGS_ANN_INDEX_H_
#define FEEDRANK_EMBEDDINGS_ANN_INDEX_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "feedrank/v1/bundle.pb.h"

namespace faiss {
struct Index;
struct IndexHNSW;
struct IndexIVFFlat;
struct IndexFlat;
}  // namespace faiss

namespace feedrank {

using v1::IndexSpec;

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

// A per-thread table of marks over rows [0, n), reset in O(1) per use by
// advancing a generation counter (a full clear every 255 uses).
class MarkTable {
 public:
  // Makes the table cover `n` rows and clears all marks.
  void Reset(size_t n);
  // Clears all marks. REQUIRES: Reset was called.
  void NextGeneration();
  bool Marked(int32_t row) const { return tags_[row] == generation_; }
  void Mark(int32_t row) { tags_[row] = generation_; }
  size_t size() const { return tags_.size(); }

 private:
  std::vector<uint8_t> tags_;
  uint8_t generation_ = 1;
};

// Rows that a search must not return (e.g. videos the user has seen). The
// search still walks through them. A RowFilter marks rows in a MarkTable
// that the caller owns and must not touch while the filter is in use.
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

// Scratch memory of one search: reused across searches on one thread, so a
// search allocates nothing once warm. Not thread-safe.
struct SearchScratch {
  MarkTable visited;
  std::vector<Hit> candidates;  // HNSW: unexpanded nodes (max-heap).
  std::vector<Hit> beam;        // HNSW: best `beam_width` seen (min-heap).
  std::vector<Hit> results;     // best k passing the filter.
  std::vector<int32_t> batch;   // ids whose distances are computed together.
  std::vector<float> scores;    // distances of `batch`, or of a block of rows.
  std::vector<Hit> probes;      // IVF: scored centroids.
};

// Per-search knobs. Zero means "the index's default".
struct SearchOptions {
  // Number of results wanted.
  int k = 100;
  // HNSW beam width (efSearch); raised to k when lower.
  int beam_width = 0;
  // IVF: lists probed.
  int nprobe = 0;
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
  // Errors: InvalidArgument for an unknown type or bad parameter.
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Build(
      const float* x, int64_t n, int d, IndexSpec* spec,
      const Progress& progress = nullptr, int threads = 0);

  // Reads a FAISS index file and checks it against the manifest: type, metric
  // (inner product), dimension, size, and the graph or lists themselves
  // (every link and id within [0, n), each id listed once).
  // Errors: NotFound (no file), InvalidArgument (anything else), each naming
  // `path`.
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Load(const std::string& path,
                                                        const IndexSpec& spec,
                                                        int d, int64_t n);

  ~AnnIndex();
  AnnIndex(const AnnIndex&) = delete;
  AnnIndex& operator=(const AnnIndex&) = delete;

  absl::Status Write(const std::string& path) const;

  // The k best rows for query `q` (size d), best first, into *out, skipping
  // rows the filter (may be null) excludes. Fewer than k when fewer rows
  // pass, or, for HNSW, when the beam reaches fewer passing rows (a filter
  // that excludes most of the catalogue). Allocation-free once `scratch` is
  // warm.
  void Search(const float* q, const SearchOptions& options,
              const RowFilter* filter, SearchScratch* scratch,
              std::vector<Hit>* out) const;

  // Exact search by scanning every vector; for tests and recall benchmarks.
  void ExactSearch(const float* q, int k, const RowFilter* filter,
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
  // The wrapped FAISS index, for tests that compare against FAISS.
  const faiss::Index& faiss_index() const { return *index_; }

 private:
  AnnIndex(std::unique_ptr<faiss::Index> index, Type type, int d, int64_t n,
           const IndexSpec& spec);
  absl::Status ValidateStructure(const std::string& path) const;

  // Each writes the k best hits, best first, into *out.
  void SearchHnsw(const float* q, int k, int beam_width, const RowFilter* filter,
                  SearchScratch* scratch, std::vector<Hit>* out) const;
  void SearchIvf(const float* q, int k, int nprobe, const RowFilter* filter,
                 SearchScratch* scratch, std::vector<Hit>* out) const;
  void SearchFlat(const float* q, int k, const RowFilter* filter, SearchScratch* scratch,
                  std::vector<Hit>* out) const;

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
};

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_ANN_INDEX_H_
