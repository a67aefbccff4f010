#include "cli/client.h"

#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "feedrank/v1/client_wire.pb.h"

namespace feedrank {

absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service) {
  wire::HealthCheckRequest request;
  request.set_service(service);
  wire::HealthCheckResponse response;
  grpc::Status status = CallUnary(channel, "/grpc.health.v1.Health/Check", request,
                                  &response, absl::Seconds(2));
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return wire::HealthCheckResponse::ServingStatus_Name(response.status());
}

absl::Status WaitForServing(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& service, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  std::string last = "no answer";
  while (absl::Now() < end) {
    auto health = CheckHealth(channel, service);
    if (health.ok() && *health == "SERVING") return absl::OkStatus();
    last = health.ok() ? *health : health.status().ToString();
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("'", service, "' not SERVING after ",
                                                  absl::FormatDuration(timeout),
                                                  "; last health answer: ", last));
}

std::string CodeName(grpc::StatusCode code) {
  return StatusCodeName(static_cast<int>(code));
}

std::string FormatFeed(const v1::RankFeedRequest& request,
                       const v1::RankFeedResponse& response) {
  std::string arms;
  for (const v1::ServedArm& arm : response.arms()) {
    absl::StrAppend(&arms, arms.empty() ? "  arms " : ",", arm.layer(), "/", arm.arm());
  }
  if (response.pinned()) arms += " [pinned]";
  std::string out = absl::StrFormat(
      "user %d: %d items  bundle %s  config '%s'%s%s%s\n", request.user_id(),
      response.items_size(), response.bundle_version(), response.config_version(), arms,
      response.cold_start() ? "  [cold start]" : "",
      response.degraded() ? absl::StrCat("  [degraded: ", response.degraded_reason(), "]")
                          : "");
  absl::StrAppendFormat(&out, "  %3s  %-12s %-12s %-10s %7s", "#", "video", "creator",
                        "source", "score");
  for (const std::string& objective : response.objectives()) {
    absl::StrAppendFormat(&out, " %9s", objective.substr(0, 9));
  }
  out += "\n";
  for (int i = 0; i < response.items_size(); ++i) {
    const v1::RankedItem& item = response.items(i);
    std::string source = v1::Source_Name(item.source());
    if (source.rfind("SOURCE_", 0) == 0) source = absl::AsciiStrToLower(source.substr(7));
    absl::StrAppendFormat(&out, "  %3d  %-12d %-12d %-10s %7.4f", i + 1, item.video_id(),
                          item.creator_id(), source, item.score());
    for (float p : item.predictions()) absl::StrAppendFormat(&out, " %9.4f", p);
    out += "\n";
  }
  if (response.has_debug()) {
    const v1::DebugInfo& d = response.debug();
    std::vector<std::string> stages;
    for (const auto& stage : d.stages()) {
      stages.push_back(absl::StrCat(stage.stage(), "=", stage.micros(), "us"));
    }
    absl::StrAppendFormat(
        &out,
        "  debug: ann %d, popular %d, fresh %d, trending %d, scored %d, excluded %d, "
        "capped %d, beam %d%s\n  stages: %s\n",
        d.ann_candidates(), d.popular_candidates(), d.fresh_candidates(),
        d.trending_candidates(), d.scored_candidates(), d.excluded(), d.creator_capped(),
        d.ann_beam_width(),
        d.exclude_pushed_down() ? ", exclude list pushed into ANN" : "",
        absl::StrJoin(stages, " "));
  }
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const ClientTls& tls,
                                                           grpc::ChannelArguments args) {
  if (tls.ca_file.empty()) {
    if (!tls.cert_file.empty() || !tls.key_file.empty() || !tls.server_name.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert-file, --tls-key-file and --tls-server-name need --tls-ca-file "
          "(the CA that signed the server's certificate)");
    }
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file go together: give both or neither");
  }
  grpc::SslCredentialsOptions options;
  ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(*FileSystem::Real(), tls.ca_file,
                                                       "CERTIFICATE", "--tls-ca-file"));
  if (!tls.cert_file.empty()) {
    ASSIGN_OR_RETURN(options.pem_cert_chain,
                     ReadPemFile(*FileSystem::Real(), tls.cert_file, "CERTIFICATE",
                                 "--tls-cert-file"));
    ASSIGN_OR_RETURN(
        options.pem_private_key,
        ReadPemFile(*FileSystem::Real(), tls.key_file, "PRIVATE KEY", "--tls-key-file"));
  }
  if (!tls.server_name.empty()) {
    args.SetString(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, tls.server_name);
  }
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

}  // namespace feedrank
