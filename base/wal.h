// WriteAheadLog: the durable log of a server's live updates (the live
// catalogue's upserts and deletes; docs/LIVE.md once served). An update is
// appended (and synced, per the policy) before it is acknowledged; on start
// the log is read back and replayed over the bundle.
//
// Layout: a directory of segments NNNNNNNNNNNNNNNNNNNN.wal (the first
// sequence number they may hold, zero-padded), each
//
//   header:  "FRWAL001" (8 bytes) | first_seq u64 LE | crc32 u32 LE of the 16
//   record:  length u32 LE | crc32 u32 LE of (seq, payload) | seq u64 LE |
//            payload (length bytes)
//
// crc32 is zlib's. Sequence numbers increase by one per acknowledged record.
// A write or sync that fails refuses its record and closes the segment; the
// next append starts a new segment whose first_seq is the refused record's
// seq, so on recovery any copy of a refused record that did reach the disk
// is dropped (a later segment's first_seq voids every earlier record with a
// seq at or above it). Recovery cuts each segment at its first record that
// is short, has a bad checksum, a length above the limit or an unexpected
// seq (a torn or corrupt tail), keeps everything before, says what it cut,
// and never appends to an old segment: writing resumes in a new one.
//
// Thread-safety: Append, Sync and TruncateBefore may be called from several
// threads; they are serialised.
#ifndef FEEDRANK_BASE_WAL_H_
#define FEEDRANK_BASE_WAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "base/mutex.h"

namespace feedrank {

enum class WalSync {
  // fsync after every record, before Append returns: an acknowledged update
  // survives a power loss.
  kAlways,
  // fsync at most every `sync_interval` (the append that finds the interval
  // passed syncs): survives a process crash (the data is in the kernel), may
  // lose the last interval on a power loss.
  kInterval,
  // Never fsync (the kernel writes back when it likes): survives a process
  // crash only.
  kNever,
};

// "always", "interval" or "never". InvalidArgument otherwise.
absl::StatusOr<WalSync> ParseWalSync(absl::string_view text);
const char* WalSyncName(WalSync sync);

struct WalOptions {
  std::string dir;
  WalSync sync = WalSync::kAlways;
  absl::Duration sync_interval = absl::Milliseconds(100);
  // Larger payloads are refused by Append; larger lengths read back are
  // corruption.
  uint32_t max_record_bytes = 64 << 20;
  // A segment past this size is closed and a new one started.
  int64_t segment_bytes = 64 << 20;
};

// What Open found.
struct WalRecovery {
  int segments = 0;
  int64_t records = 0;         // replayed
  int64_t bytes_kept = 0;      // of records replayed
  int64_t bytes_cut = 0;       // of torn or corrupt tails
  int64_t records_voided = 0;  // refused records that had reached the disk
  uint64_t last_seq = 0;       // 0 = empty log
  // One line per cut: the segment, the offset and why.
  std::vector<std::string> cuts;
};

class WriteAheadLog {
 public:
  // Reads every segment of `options.dir` (created when missing) in order,
  // calls `replay` for each record kept, in sequence order, then opens a new
  // segment for appends. Errors: those of the file system; those `replay`
  // returns (the log is then not opened); InvalidArgument for bad options.
  using ReplayFn = std::function<absl::Status(uint64_t seq, absl::string_view payload)>;
  static absl::StatusOr<std::unique_ptr<WriteAheadLog>> Open(const WalOptions& options,
                                                             FileSystem* fs,
                                                             const ReplayFn& replay,
                                                             WalRecovery* recovery);

  ~WriteAheadLog();

  // Appends one record and, per the policy, syncs it. Returns its sequence
  // number. Errors (the record is refused: not acknowledged, and voided on
  // recovery if part of it reached the disk): InvalidArgument for a payload
  // above max_record_bytes; those of the file system (ResourceExhausted for
  // a full disk, ...), naming the segment.
  absl::StatusOr<uint64_t> Append(absl::string_view payload);

  // Syncs what was appended (for kInterval and kNever callers that want a
  // point of durability).
  absl::Status Sync();

  // Removes the segments that hold only records below `seq` (after a
  // compaction made them part of a bundle). Starts a new segment first, so
  // the current one can go too.
  absl::Status TruncateBefore(uint64_t seq);

  // Makes sequence numbers continue above `seq` (a compacted bundle holds
  // records up to `seq` but the log was lost or replaced): a new segment
  // starts at seq + 1. No-op when last_seq() >= seq.
  absl::Status AdvanceTo(uint64_t seq);

  uint64_t last_seq() const;
  // Bytes in the directory's segments.
  int64_t bytes() const;

 private:
  WriteAheadLog(const WalOptions& options, FileSystem* fs) : options_(options), fs_(fs) {}
  absl::Status StartSegment(uint64_t first_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseSegment() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WalOptions options_;
  FileSystem* const fs_;
  mutable Mutex mu_;
  std::unique_ptr<WritableFile> file_ ABSL_GUARDED_BY(mu_);
  int64_t file_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Segments on disk: (first_seq, bytes), oldest first.
  std::vector<std::pair<uint64_t, int64_t>> segments_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sync_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The file name of the segment whose first sequence number is `first_seq`.
std::string WalSegmentName(uint64_t first_seq);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_WAL_H_
