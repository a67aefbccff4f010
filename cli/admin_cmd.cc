#include "cli/admin_cmd.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "cli/client.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace feedrank {
namespace {

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

std::string FormatShares(
    const google::protobuf::RepeatedPtrField<v1::ArmShareInfo>& shares) {
  std::string out;
  if (shares.empty()) return "  no experiment layers: every user gets the defaults\n";
  absl::StrAppend(&out, absl::StrFormat("  %-16s %-20s %-16s %8s %7s\n", "layer",
                                        "experiment", "arm", "buckets", "share"));
  for (const v1::ArmShareInfo& s : shares) {
    absl::StrAppend(
        &out,
        absl::StrFormat("  %-16s %-20s %-16s %8d %6.2f%%\n", s.layer(),
                        s.experiment().empty() ? "(none)" : s.experiment(),
                        s.arm().empty() ? "-" : s.arm(), s.buckets(), 100 * s.share()));
  }
  return out;
}

absl::Status Prepare(const AdminFlags& flags, grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(flags.deadline));
  if (!flags.token_file.empty()) {
    ASSIGN_OR_RETURN(const std::string token, ReadTokenFile(flags.token_file));
    context->AddMetadata("authorization", "Bearer " + token);
  }
  return absl::OkStatus();
}

}  // namespace

std::string FormatApply(const v1::ApplyConfigResponse& r) {
  std::string out = r.applied()
                        ? absl::StrCat("config '", r.config_version(), "' applied (was '",
                                       r.previous_version(), "')\n")
                        : absl::StrCat("config '", r.config_version(),
                                       "' is valid (dry run: nothing applied; serving '",
                                       r.previous_version(), "')\n");
  absl::StrAppend(&out, "bucket shares:\n", FormatShares(r.shares()));
  return out;
}

std::string FormatGetConfig(const v1::GetConfigResponse& r) {
  std::string out =
      absl::StrCat("config '", r.config_version(), "' from ", r.source(),
                   r.config_path().empty() ? "" : " " + r.config_path(), "\n");
  absl::StrAppend(&out, "bundles:\n");
  for (const v1::BundleInfo& b : r.bundles()) {
    absl::StrAppend(&out,
                    absl::StrFormat("  %-12s %-24s %9d videos %9d users %8.1f MiB  %s\n",
                                    b.name(), b.version(), b.videos(), b.users(),
                                    double(b.file_bytes()) / (1 << 20), b.dir()));
  }
  absl::StrAppend(&out, absl::StrFormat("resident memory: %.1f MiB\n",
                                        double(r.resident_bytes()) / (1 << 20)));
  absl::StrAppend(&out, "bucket shares:\n", FormatShares(r.shares()));
  if (r.reverted().empty()) {
    absl::StrAppend(&out, "guardrails: no arm reverted\n");
  } else {
    for (const v1::RevertedArmInfo& a : r.reverted()) {
      absl::StrAppend(&out, "guardrail reverted arm '", a.arm(), "' (layer '", a.layer(),
                      "', experiment '", a.experiment(), "') to '", a.reverted_to(),
                      "': ", a.reason(), "\n");
    }
  }
  absl::StrAppend(&out, "---\n", r.config_text());
  return out;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(*FileSystem::Real(), path, 4096));
  const std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  }
  return token;
}

absl::Status RunAdminApply(const AdminFlags& flags) {
  if (flags.config_path.empty()) return absl::InvalidArgumentError("give --config FILE");
  v1::ApplyConfigRequest request;
  ASSIGN_OR_RETURN(*request.mutable_config_text(),
                   ReadFileToString(*FileSystem::Real(), flags.config_path, 16 << 20));
  request.set_dry_run(flags.dry_run);
  request.set_expected_version(flags.expected_version);
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::ApplyConfigResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->ApplyConfig(&context, request, &response),
                           absl::StrCat("ApplyConfig ", flags.config_path)));
  std::cout << FormatApply(response);
  return absl::OkStatus();
}

absl::Status RunAdminGet(const AdminFlags& flags) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::GetConfigResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->GetConfig(&context, v1::GetConfigRequest(), &response),
                           "GetConfig"));
  std::cout << FormatGetConfig(response);
  return absl::OkStatus();
}

std::string FormatStatus(const v1::GetStatusResponse& r) {
  std::string out = absl::StrFormat(
      "bundle %s (%s), config '%s'\n"
      "catalogue view %d: %d live videos = %d in the bundle - %d tombstones + %d in the "
      "delta; %d users with a live embedding\n",
      r.bundle_version(), r.bundle_dir(), r.config_version(), r.catalog_version(),
      r.live_videos(), r.base_videos(), r.tombstones(), r.delta_videos(),
      r.delta_users());
  if (r.wal_dir().empty()) {
    absl::StrAppend(&out, "live updates: off (no --wal-dir)\n");
    return out;
  }
  absl::StrAppend(
      &out, absl::StrFormat(
                "update log %s (sync %s): last sequence %d, %.1f MiB; the bundle "
                "holds updates through %d; %d live updates held\n",
                r.wal_dir(), r.wal_sync(), r.wal_last_sequence(),
                double(r.wal_bytes()) / (1 << 20), r.bundle_sequence(), r.pending_ops()));
  absl::StrAppend(
      &out, absl::StrFormat(
                "last update: %s\n",
                r.last_update_unix_ms() == 0
                    ? std::string("none")
                    : absl::FormatTime(absl::FromUnixMillis(r.last_update_unix_ms()))));
  absl::StrAppend(&out, absl::StrFormat("compaction: threshold %d, %s; %d done\n",
                                        r.compaction_threshold(),
                                        r.compaction_running()   ? "running"
                                        : r.compaction_pending() ? "due"
                                                                 : "not due",
                                        r.compactions()));
  if (r.last_compaction().started_unix_ms() != 0) {
    const v1::CompactionInfo& c = r.last_compaction();
    absl::StrAppend(&out,
                    absl::StrFormat("  last: %s, %.1f s, %d videos through update "
                                    "%d into %s%s\n",
                                    c.error().empty() ? "ok" : "FAILED", c.seconds(),
                                    c.videos(), c.through_sequence(), c.dir(),
                                    c.error().empty() ? "" : ": " + c.error()));
  }
  absl::StrAppend(&out,
                  absl::StrFormat("start-up replay: %d records kept, %d bytes cut\n",
                                  r.recovered_records(), r.recovered_bytes_cut()));
  for (const std::string& cut : r.recovery_cuts())
    absl::StrAppend(&out, "  cut: ", cut, "\n");
  return out;
}

std::string FormatUpdate(const v1::UpdateResponse& r) {
  return absl::StrFormat(
      "acknowledged as update %d, catalogue view %d: %d inserted, %d replaced, %d "
      "deleted, %d unknown ids\n",
      r.sequence(), r.catalog_version(), r.inserted(), r.replaced(), r.deleted(),
      r.unknown());
}

absl::Status RunAdminStatus(const AdminFlags& flags) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::GetStatusResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->GetStatus(&context, v1::GetStatusRequest(), &response),
                           "GetStatus"));
  std::cout << FormatStatus(response);
  return absl::OkStatus();
}

absl::Status RunAdminUpsert(const AdminFlags& flags, AdminBatch kind) {
  ASSIGN_OR_RETURN(const std::string text,
                   ReadFileToString(*FileSystem::Real(), flags.update_path, 1 << 30));
  v1::UpsertVideosRequest videos_request;
  v1::UpsertUsersRequest users_request;
  v1::RecordEventsRequest events_request;
  google::protobuf::Message& request =
      kind == AdminBatch::kUsers ? static_cast<google::protobuf::Message&>(users_request)
      : kind == AdminBatch::kEvents
          ? static_cast<google::protobuf::Message&>(events_request)
          : videos_request;
  if (absl::EndsWith(flags.update_path, ".json")) {
    auto parsed = google::protobuf::util::JsonStringToMessage(text, &request);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flags.update_path, ": not a ", request.GetTypeName(),
                       " in JSON: ", parsed.message().as_string()));
    }
  } else if (!google::protobuf::TextFormat::ParseFromString(text, &request)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.update_path, ": not a ", request.GetTypeName(), " in textproto"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::UpdateResponse response;
  grpc::Status status;
  const char* call = "UpsertVideos";
  switch (kind) {
    case AdminBatch::kVideos:
      status = stub->UpsertVideos(&context, videos_request, &response);
      break;
    case AdminBatch::kUsers:
      call = "UpsertUsers";
      status = stub->UpsertUsers(&context, users_request, &response);
      break;
    case AdminBatch::kEvents:
      call = "RecordEvents";
      status = stub->RecordEvents(&context, events_request, &response);
      break;
  }
  RETURN_IF_ERROR(FromGrpc(status, call));
  if (kind == AdminBatch::kEvents) {
    std::cout << absl::StrFormat("acknowledged as update %d: %d events recorded\n",
                                 response.sequence(), response.events());
  } else {
    std::cout << FormatUpdate(response);
  }
  return absl::OkStatus();
}

absl::Status RunAdminDelete(const AdminFlags& flags) {
  v1::DeleteVideosRequest request;
  request.mutable_ids()->Assign(flags.delete_ids.begin(), flags.delete_ids.end());
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::UpdateResponse response;
  RETURN_IF_ERROR(
      FromGrpc(stub->DeleteVideos(&context, request, &response), "DeleteVideos"));
  std::cout << FormatUpdate(response);
  return absl::OkStatus();
}

absl::Status RunAdminCompact(const AdminFlags& flags) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(flags.target, flags.tls));
  auto stub = v1::FeedAdmin::NewStub(channel);
  AdminFlags long_call = flags;
  long_call.deadline = std::max(flags.deadline, absl::Hours(1));  // an index build
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(long_call, &context));
  v1::CompactionInfo info;
  RETURN_IF_ERROR(
      FromGrpc(stub->Compact(&context, v1::CompactRequest(), &info), "Compact"));
  std::cout << absl::StrFormat(
      "compacted %d videos through update %d into %s (bundle %s) in %.1f s\n",
      info.videos(), info.through_sequence(), info.dir(), info.bundle_version(),
      info.seconds());
  return absl::OkStatus();
}

}  // namespace feedrank
