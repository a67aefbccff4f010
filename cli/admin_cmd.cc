#include "cli/admin_cmd.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "feedrank/v1/admin.grpc.pb.h"

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
  auto stub = v1::FeedAdmin::NewStub(
      grpc::CreateChannel(flags.target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::ApplyConfigResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->ApplyConfig(&context, request, &response),
                           absl::StrCat("ApplyConfig ", flags.config_path)));
  std::cout << FormatApply(response);
  return absl::OkStatus();
}

absl::Status RunAdminGet(const AdminFlags& flags) {
  auto stub = v1::FeedAdmin::NewStub(
      grpc::CreateChannel(flags.target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  RETURN_IF_ERROR(Prepare(flags, &context));
  v1::GetConfigResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->GetConfig(&context, v1::GetConfigRequest(), &response),
                           "GetConfig"));
  std::cout << FormatGetConfig(response);
  return absl::OkStatus();
}

}  // namespace feedrank
