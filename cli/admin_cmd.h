// `feedrank admin`: the FeedAdmin client (admin.proto).
//
//   feedrank admin apply --config FILE [--dry-run] [--expected-version V]
//   feedrank admin get
//   feedrank admin status
//   feedrank admin upsert-videos --file REQUEST   (textproto, or .json)
//   feedrank admin upsert-users --file REQUEST
//   feedrank admin record-events --file REQUEST  (a RecordEventsRequest)
//   feedrank admin delete-videos --ids 1,2,3
//   feedrank admin compact
//
// Both take --target (the server's --admin-address) and --token-file (when
// the server has --admin-token-file).
#ifndef FEEDRANK_CLI_ADMIN_CMD_H_
#define FEEDRANK_CLI_ADMIN_CMD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "feedrank/v1/admin.pb.h"

namespace feedrank {

struct AdminFlags {
  std::string target = "127.0.0.1:50052";
  std::string token_file;
  ClientTls tls;
  absl::Duration deadline = absl::Seconds(60);
  // apply
  std::string config_path;
  bool dry_run = false;
  std::string expected_version;
  // upsert-videos / upsert-users / delete-videos
  std::string update_path;
  std::vector<uint64_t> delete_ids;
};

// The text `feedrank admin apply` prints for an answer.
std::string FormatApply(const v1::ApplyConfigResponse& response);
// The text `feedrank admin get` prints.
std::string FormatGetConfig(const v1::GetConfigResponse& response);

// The text `feedrank admin status` prints.
std::string FormatStatus(const v1::GetStatusResponse& response);
// The line an update command prints.
std::string FormatUpdate(const v1::UpdateResponse& response);

// Reads the token file: its content without surrounding whitespace.
// Errors: the file's; InvalidArgument when it is empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Runs one command, printing its answer to stdout. Errors: the RPC's status
// (its code and message) or the config file's.
absl::Status RunAdminApply(const AdminFlags& flags);
absl::Status RunAdminGet(const AdminFlags& flags);
absl::Status RunAdminStatus(const AdminFlags& flags);
// What an upsert-style command's --file holds.
enum class AdminBatch { kVideos, kUsers, kEvents };
absl::Status RunAdminUpsert(const AdminFlags& flags, AdminBatch kind);
absl::Status RunAdminDelete(const AdminFlags& flags);
absl::Status RunAdminCompact(const AdminFlags& flags);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_ADMIN_CMD_H_
