// The input format of the `index` fuzz target, shared with the test that
// replays its regression inputs in every build: one byte choosing how the
// file is loaded (byte % 3: flat; IVF of 4 lists probing 2; HNSW with M 8),
// then the FAISS index file.
#ifndef FEEDRANK_FUZZ_INDEX_INPUT_H_
#define FEEDRANK_FUZZ_INDEX_INPUT_H_

#include <cstdint>

#include "embeddings/ann_index.h"

namespace feedrank::fuzz {

inline IndexSpec IndexSpecForSelector(uint8_t selector) {
  IndexSpec spec;
  switch (selector % 3) {
    case 0:
      spec.set_type("flat");
      break;
    case 1:
      spec.set_type("ivf");
      spec.set_ivf_nlist(4);
      spec.set_ivf_nprobe(2);
      break;
    default:
      spec.set_type("hnsw");
      spec.set_hnsw_m(8);
      spec.set_hnsw_ef_construction(32);
      break;
  }
  return spec;
}

}  // namespace feedrank::fuzz

#endif  // FEEDRANK_FUZZ_INDEX_INPUT_H_
