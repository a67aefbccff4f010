#include "server/feed_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <omp.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"

namespace feedrank {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

v1::Source ToProto(CandidateSource source) {
  switch (source) {
    case CandidateSource::kAnn:
      return v1::SOURCE_ANN;
    case CandidateSource::kPopular:
      return v1::SOURCE_POPULAR;
    case CandidateSource::kFresh:
      return v1::SOURCE_FRESH;
    case CandidateSource::kColdStart:
      return v1::SOURCE_COLD_START;
  }
  return v1::SOURCE_UNSPECIFIED;
}

DeviceType FromProto(v1::Device device) {
  switch (device) {
    case v1::DEVICE_ANDROID:
      return DeviceType::kAndroid;
    case v1::DEVICE_IOS:
      return DeviceType::kIos;
    case v1::DEVICE_WEB:
      return DeviceType::kWeb;
    default:
      return DeviceType::kUnspecified;
  }
}

constexpr size_t kMaxRequestIdBytes = 128;
constexpr int32_t kMaxUtcOffsetMinutes = 14 * 60;

}  // namespace

grpc::ServerUnaryReactor* FeedRankerService::RankFeed(
    grpc::CallbackServerContext* context, const v1::RankFeedRequest* request,
    v1::RankFeedResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Checked here, not when a worker takes the call: calls accepted before
  // draining began still get ranked.
  if (draining_.load(std::memory_order_acquire)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return reactor;
  }
  const bool queued = workers_->TrySubmit([this, context, request, response, reactor] {
    reactor->Finish(Handle(context, *request, response));
  });
  if (!queued) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("overloaded: ", workers_->queued(), " calls already queued")));
  }
  return reactor;
}

grpc::Status FeedRankerService::Handle(grpc::CallbackServerContext* context,
                                       const v1::RankFeedRequest& request,
                                       v1::RankFeedResponse* response) {
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued");
  }
  std::shared_ptr<const Snapshot> snapshot = snapshots_->Current();
  if (snapshot == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no bundle loaded yet");
  }
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("request_id: ", request.request_id().size(),
                                     " bytes, at most ", kMaxRequestIdBytes));
  }
  const v1::RequestContext& ctx = request.context();
  if (ctx.client_time_ms() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("context.client_time_ms: ",
                                     ctx.client_time_ms(), " is negative"));
  }
  if (ctx.utc_offset_minutes() < -kMaxUtcOffsetMinutes ||
      ctx.utc_offset_minutes() > kMaxUtcOffsetMinutes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("context.utc_offset_minutes: ", ctx.utc_offset_minutes(),
                     " is outside [-840, 840]"));
  }

  RankRequest rank;
  rank.user_id = request.user_id();
  if (request.has_count()) {
    rank.count = static_cast<int>(std::min<uint32_t>(request.count(), INT32_MAX));
  }
  rank.exclude_ids = absl::MakeConstSpan(request.exclude_ids().data(),
                                         request.exclude_ids().size());
  rank.context.now_ms = ctx.client_time_ms() > 0 ? ctx.client_time_ms()
                                                 : absl::ToUnixMillis(absl::Now());
  rank.context.utc_offset_minutes = ctx.utc_offset_minutes();
  rank.context.device = FromProto(ctx.device());
  rank.debug = request.debug();
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    rank.deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        deadline - std::chrono::system_clock::now());
  }

  thread_local RankResult result;
  absl::Status status = snapshot->ranker->Rank(rank, &result);
  if (!status.ok()) return ToGrpc(status);

  const Bundle& bundle = *snapshot->bundle;
  const int heads = bundle.model->num_objectives();
  for (const std::string& objective : bundle.model->objectives()) {
    response->add_objectives(objective);
  }
  response->mutable_items()->Reserve(static_cast<int>(result.items.size()));
  for (size_t i = 0; i < result.items.size(); ++i) {
    const RankedVideo& video = result.items[i];
    v1::RankedItem* item = response->add_items();
    item->set_video_id(video.video_id);
    item->set_creator_id(video.creator_id);
    item->set_score(video.score);
    item->set_source(ToProto(video.source));
    if (!result.predictions.empty()) {
      item->mutable_predictions()->Add(result.predictions.begin() + i * heads,
                                       result.predictions.begin() + (i + 1) * heads);
    }
  }
  response->set_bundle_version(bundle.manifest.version());
  response->set_config_version(snapshot->config.version());
  response->set_degraded(result.degraded);
  response->set_degraded_reason(result.degraded_reason);
  response->set_request_id(request.request_id());
  response->set_cold_start(result.cold_start);
  if (request.debug()) {
    const RankDebug& d = result.debug;
    v1::DebugInfo* debug = response->mutable_debug();
    for (const StageTime& stage : d.stages) {
      v1::StageTiming* timing = debug->add_stages();
      timing->set_stage(stage.stage);
      timing->set_micros(stage.micros);
    }
    debug->set_ann_candidates(d.ann_candidates);
    debug->set_popular_candidates(d.popular_candidates);
    debug->set_fresh_candidates(d.fresh_candidates);
    debug->set_scored_candidates(d.scored_candidates);
    debug->set_excluded(d.excluded);
    debug->set_creator_capped(d.creator_capped);
    debug->set_exclude_pushed_down(d.exclude_pushed_down);
    debug->set_ann_beam_width(d.ann_beam_width);
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<FeedServer>> FeedServer::Start(ServerOptions options) {
  // Parallelism comes from concurrent requests; FAISS calls stay on one
  // OpenMP thread each.
  omp_set_num_threads(1);
  std::unique_ptr<FeedServer> server(new FeedServer());
  server->options_ = std::move(options);
  const ServerOptions& o = server->options_;
  server->workers_ = std::make_unique<WorkerPool>(o.workers, o.max_queue);
  server->service_ =
      std::make_unique<FeedRankerService>(&server->snapshots_, server->workers_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server->options_.address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(server->options_.max_request_bytes);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", server->options_.address));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kRankerServiceName, false);
  LogInfo("listening on %s (port %d), %d ranking threads; not serving until a bundle "
          "is loaded",
          server->options_.address, server->port_, server->workers_->threads());
  return server;
}

FeedServer::~FeedServer() { Shutdown(); }

absl::Status FeedServer::Load() {
  // One load at a time; the snapshot manager serialises too, but the health
  // flip below must follow the load it reports.
  RankingConfig config;
  if (!options_.config_path.empty()) {
    auto parsed = ReadConfigFile(options_.config_path);
    if (!parsed.ok()) {
      LogError("config refused, previous state kept: %s", parsed.status().ToString());
      return parsed.status();
    }
    config = *std::move(parsed);
  }
  absl::Status status = snapshots_.LoadBundle(options_.bundle_dir, config);
  absl::MutexLock lock(&state_mu_);
  if (status.ok() && !shutting_down_) {
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    health->SetServingStatus(kRankerServiceName, true);
    health->SetServingStatus("", true);
  }
  return status;
}

void FeedServer::Shutdown() {
  bool first = false;
  {
    absl::MutexLock lock(&state_mu_);
    if (!shutting_down_) {
      shutting_down_ = true;
      first = true;
      if (server_ != nullptr) server_->GetHealthCheckService()->SetServingStatus(false);
    }
  }
  if (!first) {  // another caller is draining: return once it is done
    stopped_.WaitForNotification();
    return;
  }
  if (server_ != nullptr) {
    LogInfo("draining: health NOT_SERVING, then up to %s for in-flight calls",
            absl::FormatDuration(options_.drain_timeout));
    if (options_.drain_grace > absl::ZeroDuration()) {
      absl::SleepFor(options_.drain_grace);
    }
    // Calls already queued still run; new ones are refused.
    service_->StartDraining();
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoNanoseconds(options_.drain_timeout));
    server_->Wait();
    LogInfo("stopped");
  }
  workers_.reset();
  stopped_.Notify();
}

void FeedServer::Wait() { stopped_.WaitForNotification(); }

}  // namespace feedrank
