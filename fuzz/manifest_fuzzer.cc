// manifest.json (embeddings/manifest.h): JSON parsing into the manifest,
// unknown fields, and every range ValidateManifest checks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "embeddings/manifest.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = feedrank::fuzz::ScratchDir();
  feedrank::fuzz::WriteInput("manifest.json", feedrank::fuzz::AsView(data, size));
  auto manifest = feedrank::ReadManifest(dir);
  // A manifest ReadManifest accepts passes the check it applied.
  if (manifest.ok() && !feedrank::ValidateManifest(*manifest).ok()) std::abort();
  return 0;
}
