// FAISS index files (embeddings/ann_index.h): AnnIndex::Load's checks of
// type, metric, dimension, size and the structure (graph links and levels,
// inverted lists), then searches over an index it accepted, which must stay
// within the catalogue's rows.
//
// Input: as fuzz/index_input.h says (a byte choosing the index type, then
// the file). The seeds (corpus/index) are valid indexes of kRows x kDim.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "embeddings/ann_index.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/index_input.h"

namespace {

constexpr int kDim = 8;
constexpr int64_t kRows = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const feedrank::IndexSpec spec = feedrank::fuzz::IndexSpecForSelector(data[0]);
  const std::string path = feedrank::fuzz::WriteInput(
      "input.faiss", feedrank::fuzz::AsView(data + 1, size - 1));
  auto index = feedrank::AnnIndex::Load(path, spec, kDim, kRows);
  if (!index.ok()) return 0;
  std::vector<float> q(kDim);
  for (int i = 0; i < kDim; ++i)
    q[i] = (i % 2 == 0 ? 1.0f : -0.5f) * static_cast<float>(i + 1);
  feedrank::SearchScratch scratch;
  std::vector<feedrank::Hit> hits;
  for (int k : {1, 10, static_cast<int>(kRows)}) {
    feedrank::SearchOptions options;
    options.k = k;
    (*index)->Search(q.data(), options, feedrank::RowPredicate(), &scratch, &hits);
    // Every hit is a row of the catalogue, listed once.
    std::vector<bool> seen(kRows, false);
    for (const feedrank::Hit& hit : hits) {
      if (hit.row < 0 || hit.row >= kRows || seen[hit.row]) std::abort();
      seen[hit.row] = true;
    }
    if (static_cast<int>(hits.size()) > k) std::abort();
  }
  return 0;
}
