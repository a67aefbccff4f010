// The update log as a server reads it at start (base/wal.h,
// server/live_updates.h): segment headers, record framing and checksums,
// torn tails, then each record parsed as a LiveUpdateRecord and the whole
// log replayed onto a bundle (LiveUpdates::Publish), which checks every
// batch as the admin service would.
//
// Input: one byte choosing the mode, then
//   raw     (even): the bytes of one segment file, as found on disk;
//   framed  (odd):  chunks of (length u16 LE, payload), which the harness
//                   frames into a valid segment (header, checksums and
//                   sequence numbers right), so that the fuzzer reaches the
//                   records' contents instead of failing checksums.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/env.h"
#include "base/wal.h"
#include "fuzz/fuzz_util.h"
#include "server/live_updates.h"

namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t Crc(const std::string& bytes) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                     reinterpret_cast<const Bytef*>(bytes.data()),
                                     static_cast<uInt>(bytes.size())));
}

// A segment starting at sequence 1 holding `data`'s chunks as records.
std::string Frame(const uint8_t* data, size_t size) {
  std::string out = "FRWAL001";
  PutU64(&out, 1);
  PutU32(&out, Crc(out));
  uint64_t seq = 1;
  size_t at = 0;
  while (at + 2 <= size) {
    size_t n = data[at] | (size_t{data[at + 1]} << 8);
    at += 2;
    if (n > size - at) n = size - at;
    std::string seq_and_payload;
    PutU64(&seq_and_payload, seq++);
    seq_and_payload.append(reinterpret_cast<const char*>(data + at), n);
    at += n;
    PutU32(&out, static_cast<uint32_t>(n));
    PutU32(&out, Crc(seq_and_payload));
    out += seq_and_payload;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string dir = feedrank::fuzz::ScratchDir() + "/wal";
  feedrank::fuzz::ResetDir(dir);
  const std::string segment =
      data[0] % 2 == 0 ? std::string(feedrank::fuzz::AsView(data + 1, size - 1))
                       : Frame(data + 1, size - 1);
  feedrank::fuzz::WriteInput("wal/" + feedrank::WalSegmentName(1), segment);

  static const std::shared_ptr<const feedrank::Bundle>& bundle =
      feedrank::fuzz::SmallBundle();
  feedrank::LiveOptions options;
  options.wal_dir = dir;
  options.sync = feedrank::WalSync::kNever;
  auto live = feedrank::LiveUpdates::Open(options, feedrank::Env::Default(),
                                          feedrank::FileSystem::Real());
  if (!live.ok()) return 0;
  std::shared_ptr<const feedrank::CatalogView> served;
  absl::Status published =
      (*live)->Publish(bundle, *feedrank::FileSystem::Real(),
                       [&](std::shared_ptr<const feedrank::CatalogView> view) {
                         served = std::move(view);
                       });
  // Publish succeeds only by storing the view it made.
  if (published.ok() && served == nullptr) std::abort();
  return 0;
}
