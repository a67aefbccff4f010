#include "server/feed_server.h"

#include <google/protobuf/arena.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/codegen/proto_buffer_reader.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"
#include "ranking/request.h"

namespace feedrank {
namespace {

using google::protobuf::internal::WireFormatLite;

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// Protobuf reports every request with invalid UTF-8 in a string field with
// an ERROR line: one per call would let a client flood the log. Route its
// lines through ours, at most one per second, counting the rest.
void RateLimitedProtobufLog(google::protobuf::LogLevel level, const char* filename,
                            int line, const std::string& message) {
  static std::atomic<int64_t> last_ms{0};
  static std::atomic<int64_t> dropped{0};
  const int64_t now = absl::ToUnixMillis(absl::Now());
  int64_t last = last_ms.load(std::memory_order_relaxed);
  if (now - last < 1000 ||
      !last_ms.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t skipped = dropped.exchange(0, std::memory_order_relaxed);
  const std::string text = absl::StrCat(
      "protobuf: ", message,
      skipped > 0 ? absl::StrCat(" (", skipped, " similar lines dropped)") : "");
  LogLine(level >= google::protobuf::LOGLEVEL_ERROR     ? LogLevel::kError
          : level >= google::protobuf::LOGLEVEL_WARNING ? LogLevel::kWarning
                                                        : LogLevel::kInfo,
          text);
}

// Counts the exclude_ids (field 3) of a serialized RankFeedRequest without
// decoding them, so an oversized list is refused before it is expanded
// (4 MiB of one-byte ids would become 32 MiB of uint64). Returns -1 when the
// bytes do not parse; the parser then reports it.
int64_t CountExcludeIds(grpc::ByteBuffer* buffer) {
  grpc::ProtoBufferReader reader(buffer);
  google::protobuf::io::CodedInputStream input(&reader);
  input.SetTotalBytesLimit(INT32_MAX);
  int64_t count = 0;
  while (const uint32_t tag = input.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) ==
        v1::RankFeedRequest::kExcludeIdsFieldNumber) {
      if (WireFormatLite::GetTagWireType(tag) ==
          WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        uint32_t length;
        if (!input.ReadVarint32(&length)) return -1;
        // Every varint ends in one byte with the top bit clear.
        while (length > 0) {
          const void* data;
          int size;
          if (!input.GetDirectBufferPointer(&data, &size)) return -1;
          const int take = std::min<int64_t>(size, length);
          const uint8_t* bytes = static_cast<const uint8_t*>(data);
          for (int i = 0; i < take; ++i) count += bytes[i] < 0x80;
          input.Skip(take);
          length -= take;
        }
        continue;
      }
      if (WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_VARINT) ++count;
    }
    if (!WireFormatLite::SkipField(&input, tag)) return -1;
  }
  return count;
}

// Per worker thread: the first block of every call's arena, reused.
constexpr size_t kArenaBlockBytes = 256 << 10;
char* ThreadArenaBlock() {
  thread_local std::unique_ptr<char[]> block(new char[kArenaBlockBytes]);
  return block.get();
}

}  // namespace

grpc::ServerUnaryReactor* FeedRankerService::RankFeed(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const SteadyTime arrived = options_->env.clock->Now();
  metrics_->AddInFlight(1);
  // Checked here, not when a worker takes the call: calls accepted before
  // draining began still get ranked.
  if (draining_.load(std::memory_order_acquire)) {
    Finish(reactor,
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"),
           arrived, CallSummary());
    return reactor;
  }
  // The deadline on the server's clock, taken at arrival: time spent queued
  // counts against it.
  SteadyTime deadline = SteadyTime::max();
  const auto grpc_deadline = context->deadline();
  if (grpc_deadline != std::chrono::system_clock::time_point::max()) {
    deadline = arrived + std::chrono::duration_cast<SteadyTime::duration>(
                             grpc_deadline - std::chrono::system_clock::now());
  }
  const bool queued =
      workers_->TrySubmit([this, context, request, response, reactor, deadline, arrived] {
        CallSummary summary;
        const grpc::Status status =
            Handle(context, *request, arrived, deadline, response, &summary);
        Finish(reactor, status, arrived, std::move(summary));
      });
  if (!queued) {
    overloaded_.fetch_add(1, std::memory_order_relaxed);
    Finish(reactor,
           grpc::Status(
               grpc::StatusCode::UNAVAILABLE,
               absl::StrCat("overloaded: ", workers_->queued(), " calls already queued")),
           arrived, CallSummary());
  }
  return reactor;
}

void FeedRankerService::Finish(grpc::ServerUnaryReactor* reactor,
                               const grpc::Status& status, SteadyTime arrived,
                               CallSummary&& summary) {
  const int code = static_cast<int>(status.error_code());
  const int64_t micros = MicrosBetween(arrived, options_->env.clock->Now());
  metrics_->RecordCall(Method::kRankFeed, code, micros);
  for (int16_t slot : summary.arm_slots) {
    metrics_->RecordArmCall(slot, code, micros, summary.degraded,
                            summary.mean_predictions.data(), summary.objectives);
  }
  // Answered calls only: a replay needs the page the server returned.
  if (summary.log_entry.has_value() && status.ok()) {
    summary.log_entry->latency_us = micros;
    request_log_->Submit(std::move(*summary.log_entry));
  }
  if (access_log_ != nullptr) {
    AccessEntry entry;
    entry.method = "RankFeed";
    entry.request_id = summary.request_id;
    entry.user_id = summary.user_id;
    entry.code = code;
    // error_message() returns a copy: keep it alive for the line.
    const std::string message = status.error_message();
    entry.message = message;
    entry.latency_micros = micros;
    entry.items = summary.items;
    for (int c = 0; c < static_cast<int>(DegradeCause::kNumCauses); ++c) {
      if ((summary.degrade_causes >> c) & 1) {
        if (!entry.degraded.empty()) entry.degraded += ",";
        entry.degraded += DegradeCauseName(static_cast<DegradeCause>(c));
      }
    }
    if (summary.snapshot != nullptr) {
      entry.bundle_version = summary.snapshot->bundle->manifest.version();
      entry.config_version = summary.snapshot->config.version();
    }
    access_log_->Record(entry);
  }
  metrics_->AddInFlight(-1);
  reactor->Finish(status);
}

grpc::Status FeedRankerService::Handle(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer& request_bytes,
                                       SteadyTime arrived, SteadyTime deadline,
                                       grpc::ByteBuffer* response_bytes,
                                       CallSummary* summary) {
  if (context->IsCancelled()) {
    cancelled_in_queue_.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while queued");
  }
  std::shared_ptr<const Snapshot> snapshot = snapshots_->Current();
  if (snapshot == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no bundle loaded yet");
  }
  const size_t size = request_bytes.Length();
  if (size > size_t(options_->max_request_bytes)) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("request of ", size, " bytes exceeds the limit of ",
                     options_->max_request_bytes, " (--max-request-bytes)"));
  }
  // The reader only reads the buffer; its API takes a non-const pointer.
  grpc::ByteBuffer* bytes = const_cast<grpc::ByteBuffer*>(&request_bytes);
  const int max_exclude = snapshot->RankerFor(0).options().max_exclude_ids;
  if (const int64_t excluded = CountExcludeIds(bytes); excluded > max_exclude) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("exclude_ids: ", excluded, " ids, at most ",
                                     max_exclude, " are allowed"));
  }

  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = ThreadArenaBlock();
  arena_options.initial_block_size = kArenaBlockBytes;
  google::protobuf::Arena arena(arena_options);
  auto* request = google::protobuf::Arena::CreateMessage<v1::RankFeedRequest>(&arena);
  {
    grpc::ProtoBufferReader reader(bytes);
    if (!request->ParseFromZeroCopyStream(&reader)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "request body is not a valid feedrank.v1.RankFeedRequest "
                          "(malformed wire data, or invalid UTF-8 in a string field)");
    }
  }
  if (access_log_ != nullptr) summary->request_id = request->request_id();
  summary->user_id = request->user_id();
  summary->snapshot = snapshot;
  RankRequest rank;
  if (absl::Status status = RankRequestFromProto(*request, *options_->env.clock, &rank);
      !status.ok()) {
    return ToGrpc(status);
  }
  rank.deadline = deadline;

  // The user's arms: one hash per layer, the ranker precomputed. Pins are
  // copied only when a request has them (QA traffic).
  thread_local Assignment assignment;
  thread_local std::vector<ArmPin> pins;
  pins.clear();
  for (const v1::ArmPin& pin : request->pin_arms())
    pins.emplace_back(pin.layer(), pin.arm());
  if (absl::Status status =
          snapshot->experiments->Assign(request->user_id(), pins, &assignment);
      !status.ok()) {
    return ToGrpc(
        absl::InvalidArgumentError(absl::StrCat("pin_arms: ", status.message())));
  }
  // Pinned calls say nothing of an arm's effect: not in its metrics.
  if (!assignment.pinned) {
    for (const ArmAssignment* arm : assignment.arms) {
      if (arm == nullptr) continue;
      const int slot = snapshot->arm_slots[arm->id];
      if (slot >= 0) summary->arm_slots.push_back(static_cast<int16_t>(slot));
    }
  }
  // An arm on another bundle ranks over that bundle's catalogue.
  const Ranker& ranker = snapshot->RankerFor(assignment.combination);
  const Bundle& bundle = ranker.bundle();
  const CatalogView& view =
      &bundle == snapshot->bundle.get() ? *snapshot->view : *bundle.view;
  thread_local RankResult result;
  if (absl::Status status = ranker.Rank(view, rank, &result); !status.ok()) {
    return ToGrpc(status);
  }
  metrics_->RecordRanking(result);
  summary->items = static_cast<int>(result.items.size());
  summary->degrade_causes = result.degrade_causes;
  summary->degraded = result.degrade_causes != 0;
  if (!summary->arm_slots.empty() && !result.items.empty() &&
      !result.predictions.empty()) {
    const int heads = static_cast<int>(result.predictions.size() / result.items.size());
    summary->objectives = std::min(heads, ServerMetrics::kMaxObjectives);
    for (int o = 0; o < summary->objectives; ++o) {
      double total = 0;
      for (size_t i = 0; i < result.items.size(); ++i)
        total += result.predictions[i * heads + o];
      summary->mean_predictions[o] = static_cast<float>(total / result.items.size());
    }
  }
  // Fault injection (RankingParams.inject_delay_ms), never past the
  // deadline.
  if (const int delay_ms = ranker.options().inject_delay_ms; delay_ms > 0) {
    const Clock& clock = *options_->env.clock;
    const SteadyTime now = clock.Now();
    SteadyTime until = now + std::chrono::milliseconds(delay_ms);
    const bool cut = deadline < until;
    if (cut) until = deadline;
    if (until > now) absl::SleepFor(absl::FromChrono(until - now));
    // The delay outlasted the call: it fails as a slow backend's would,
    // whichever side notices the deadline first.
    if (cut) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("injected delay of ", delay_ms,
                                       " ms (RankingParams.inject_delay_ms) reached the "
                                       "call's deadline"));
    }
  }
  auto* response = google::protobuf::Arena::CreateMessage<v1::RankFeedResponse>(&arena);
  ResponseInfo info;
  info.objectives = &bundle.model->objectives();
  info.bundle_version = bundle.manifest.version();
  info.config_version = snapshot->config.version();
  info.catalog_version = view.version();
  RankResultToProto(*request, result, info, response);
  for (const ArmAssignment* arm : assignment.arms) {
    if (arm == nullptr) continue;
    v1::ServedArm* served = response->add_arms();
    served->set_layer(arm->layer);
    served->set_experiment(arm->experiment);
    served->set_arm(arm->arm);
    if (!arm->reverted_to.empty()) served->set_reverted_to(arm->reverted_to);
  }
  response->set_pinned(assignment.pinned);
  if (request_log_ != nullptr && request_log_->Sample()) {
    // A compact copy; the log's thread parses and writes it.
    RequestLogEntry& entry = summary->log_entry.emplace();
    std::vector<grpc::Slice> slices;
    if (bytes->Dump(&slices).ok()) {
      entry.request.reserve(size);
      for (const grpc::Slice& slice : slices) {
        entry.request.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
    const Clock& clock = *options_->env.clock;
    entry.time_ms = clock.UnixMillis() - MicrosBetween(arrived, clock.Now()) / 1000;
    entry.bundle_version = std::string(info.bundle_version);
    entry.config_version = std::string(info.config_version);
    entry.catalog_version = info.catalog_version;
    for (const ArmAssignment* arm : assignment.arms) {
      if (arm != nullptr) entry.arms.push_back(absl::StrCat(arm->layer, "/", arm->arm));
    }
    entry.video_ids.reserve(result.items.size());
    for (const RankedVideo& item : result.items) entry.video_ids.push_back(item.video_id);
    entry.degraded = result.degrade_causes != 0;
    entry.known_user = !result.cold_start;
  }
  bool own_buffer;
  return grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::RankFeedResponse>(
      *response, response_bytes, &own_buffer);
}

absl::Status ValidateServerOptions(const ServerOptions& o) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  auto loopback = [](const std::string& host) {
    return host == "127.0.0.1" || host == "localhost" || host == "::1" ||
           host == "[::1]" || absl::StartsWith(host, "127.");
  };
  std::string host;
  int port;
  if (absl::Status address = ParseHostPort(o.address, &host, &port); !address.ok()) {
    if (!absl::StartsWith(o.address, "unix:")) return address;
  } else if (!loopback(host) && !o.tls.enabled() && !o.plaintext) {
    return bad("address: ", o.address,
               " is not a loopback address and no TLS certificate is given: give "
               "--tls-cert-file and --tls-key-file, or --plaintext to serve without TLS "
               "(behind a mesh sidecar or on a private network)");
  }
  if (o.plaintext && o.tls.enabled()) {
    return bad(
        "plaintext: --plaintext and --tls-cert-file contradict each other; give one");
  }
  if (!o.metrics_address.empty()) {
    RETURN_IF_ERROR(ParseHostPort(o.metrics_address, &host, &port));
  }
  if (absl::Status tls = ValidateServerTls(o.tls); !tls.ok()) return tls;
  if (!o.admin_address.empty()) {
    if (!absl::StartsWith(o.admin_address, "unix:")) {
      RETURN_IF_ERROR(ParseHostPort(o.admin_address, &host, &port));
      if (!loopback(host) && o.admin_token.empty() && o.tls.client_ca_file.empty()) {
        return bad("admin_address: ", o.admin_address,
                   " is not a loopback address; an exposed admin service needs a token "
                   "(--admin-token-file) or mutual TLS (--tls-client-ca-file)");
      }
    }
    if (o.admin_address == o.address && !absl::EndsWith(o.address, ":0")) {
      return bad("admin_address: the admin service needs an address of its own, not ",
                 o.address);
    }
  }

  if (o.bundle_dir.empty() == o.bundle_root.empty()) {
    return bad(
        "give exactly one of a bundle directory (--bundle) and a bundle root "
        "(--bundle-root)");
  }
  if (o.max_request_bytes < 1 || o.max_request_bytes > (1 << 30)) {
    return bad("max_request_bytes: ", o.max_request_bytes, " is outside [1, 2^30]");
  }
  auto duration = [&](const char* name, absl::Duration d,
                      absl::Duration hi) -> absl::Status {
    if (d < absl::ZeroDuration() || d > hi || d == absl::InfiniteDuration()) {
      return bad(name, ": ", absl::FormatDuration(d), " is outside [0, ",
                 absl::FormatDuration(hi), "]");
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(duration("drain_grace", o.drain_grace, absl::Hours(1)));
  RETURN_IF_ERROR(duration("drain_timeout", o.drain_timeout, absl::Hours(1)));
  RETURN_IF_ERROR(duration("watch_interval", o.watch_interval, absl::Hours(24)));
  RETURN_IF_ERROR(duration("guardrail_interval", o.guardrail_interval, absl::Hours(1)));
  RETURN_IF_ERROR(duration("compact_interval", o.compact_interval, absl::Hours(24)));
  RETURN_IF_ERROR(duration("wal_sync_interval", o.live.sync_interval, absl::Hours(1)));
  if (o.live.compact_threshold < 0) {
    return bad("compact_threshold: ", o.live.compact_threshold, " is negative");
  }
  if (o.live.compact_event_threshold < 0) {
    return bad("compact_event_threshold: ", o.live.compact_event_threshold,
               " is negative");
  }
  if (o.live.compact_threads < 0 || o.live.compact_threads > 1024) {
    return bad("compact_threads: ", o.live.compact_threads, " is outside [0, 1024]");
  }
  const ConnectionLimits& l = o.limits;
  if (l.max_concurrent_streams < 1 || l.max_concurrent_streams > 1 << 20) {
    return bad("max_concurrent_streams: ", l.max_concurrent_streams,
               " is outside [1, 2^20]");
  }
  RETURN_IF_ERROR(duration("max_idle", l.max_idle, absl::Hours(24 * 365)));
  RETURN_IF_ERROR(duration("max_age", l.max_age, absl::Hours(24 * 365)));
  RETURN_IF_ERROR(duration("handshake_timeout", l.handshake_timeout, absl::Hours(1)));
  RETURN_IF_ERROR(duration("keepalive_time", l.keepalive_time, absl::Hours(24 * 365)));
  RETURN_IF_ERROR(duration("keepalive_timeout", l.keepalive_timeout, absl::Hours(1)));
  RETURN_IF_ERROR(
      duration("min_client_ping_interval", l.min_client_ping_interval, absl::Hours(24)));
  if (o.env.clock == nullptr || o.env.fs == nullptr) {
    return bad("server: env needs a clock and a file system");
  }
  RETURN_IF_ERROR(ValidateRequestLogOptions(o.request_log));
  return absl::OkStatus();
}

namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

// Makes sure one ServerBuilder has gRPC's v1alpha reflection plugin
// (`want`) or has not. Linking grpc++_reflection registers the plugin for
// every server of the process at static initialisation, so turning it off
// means taking it out of this builder's list.
class ReflectionPluginOption : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionPluginOption(bool want) : want_(want) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(
      std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
    bool present = false;
    for (auto it = plugins->begin(); it != plugins->end();) {
      if ((*it)->name() == name && (!want_ || present)) {
        it = plugins->erase(it);
      } else {
        present |= (*it)->name() == name;
        ++it;
      }
    }
    if (want_ && !present) {
      plugins->push_back(
          std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
    }
  }

 private:
  bool want_;
};

// gRPC's own log lines, through ours (one format for the whole process).
void GrpcLog(gpr_log_func_args* args) {
  const LogLevel level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LogLevel::kError
                         : args->severity == GPR_LOG_SEVERITY_INFO ? LogLevel::kInfo
                                                                   : LogLevel::kDebug;
  LogLine(level,
          absl::StrCat("grpc: ", args->message, " (", args->file, ":", args->line, ")"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<FeedServer>> FeedServer::Start(ServerOptions options) {
  RETURN_IF_ERROR(ValidateServerOptions(options));
  // Parallelism comes from concurrent requests; FAISS calls stay on one
  // OpenMP thread each.
  omp_set_num_threads(1);
  google::protobuf::SetLogHandler(&RateLimitedProtobufLog);
  gpr_set_log_function(&GrpcLog);
  // gRPC's INFO lines are per-connection chatter: only at our debug level.
  gpr_set_log_verbosity(MinLogLevel() == LogLevel::kDebug ? GPR_LOG_SEVERITY_DEBUG
                                                          : GPR_LOG_SEVERITY_ERROR);
  std::unique_ptr<FeedServer> server(new FeedServer());
  server->options_ = std::move(options);
  const ServerOptions& o = server->options_;
  server->metrics_ = std::make_unique<ServerMetrics>();
  if (!o.access_log.path.empty()) {
    ASSIGN_OR_RETURN(server->access_log_, AccessLog::Open(o.access_log));
  }
  if (!o.request_log.path.empty()) {
    ASSIGN_OR_RETURN(server->request_log_, RequestLog::Open(o.request_log, *o.env.fs));
    server->metrics_->SetRequestLogCounts(
        [log = server->request_log_.get()] { return log->counts(); });
  }
  ASSIGN_OR_RETURN(server->workers_, WorkerPool::Create(o.workers, o.max_queue));
  server->metrics_->SetQueueDepth(
      [pool = server->workers_.get()] { return double(pool->queued()); });
  {
    // Relative `bundles` dirs of a config resolve beside the served bundle.
    const std::string base =
        ParentDir(o.bundle_root.empty() ? o.bundle_dir : o.bundle_root);
    ServerMetrics* metrics = server->metrics_.get();
    server->snapshots_ =
        std::make_unique<SnapshotManager>(o.env, base, [metrics](Snapshot* snapshot) {
          const ExperimentConfig& e = *snapshot->experiments;
          for (int id = 0; id < e.arm_count(); ++id) {
            const ArmAssignment& a = e.arm(id);
            snapshot->arm_slots[id] = metrics->ArmSlot({a.layer, a.experiment, a.arm});
          }
        });
  }
  if (!o.live.wal_dir.empty()) {
    ASSIGN_OR_RETURN(server->live_, LiveUpdates::Open(o.live, o.env, o.env.fs));
    server->snapshots_->SetLive(server->live_.get());
    server->metrics_->SetLiveCounts([live = server->live_.get()] {
      v1::GetStatusResponse status;
      live->Status(&status);
      LiveCounts c;
      c.batches = live->batches();
      c.refused = live->refused();
      c.log_failures = live->log_failures();
      c.delta_videos = int64_t(status.delta_videos());
      c.tombstones = int64_t(status.tombstones());
      c.delta_users = int64_t(status.delta_users());
      c.wal_bytes = status.wal_bytes();
      c.wal_last_sequence = status.wal_last_sequence();
      c.compactions = int64_t(status.compactions());
      c.compaction_failures = live->compaction_failures();
      c.last_compaction_seconds = status.last_compaction().seconds();
      return c;
    });
  }
  server->guardrails_ = std::make_unique<GuardrailMonitor>(server->snapshots_.get(),
                                                           server->metrics_.get());
  server->metrics_->SetReverted([snapshots = server->snapshots_.get()] {
    std::vector<RevertedArmLabels> out;
    for (const RevertedArm& r : snapshots->reverted())
      out.push_back({{r.layer, r.experiment, r.arm}, r.reverted_to});
    return out;
  });
  server->service_ = std::make_unique<FeedRankerService>(
      server->snapshots_.get(), server->workers_.get(), &o, server->metrics_.get(),
      server->access_log_.get(), server->request_log_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // gRPC turns SO_REUSEPORT on by default: a second server on the port would
  // start and silently take half the connections. The port is ours alone.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const ConnectionLimits& l = o.limits;
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, l.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, Millis(l.max_idle));
  if (l.max_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, Millis(l.max_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               Millis(o.drain_timeout));
  }
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             Millis(l.handshake_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(l.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(l.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Millis(l.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(o.tls, /*mutual=*/false, *o.env.fs));
  builder.AddListeningPort(o.address, credentials, &server->port_);
  // RankFeed enforces max_request_bytes itself; gRPC's own limit only has to
  // let such requests through (health checks and reflection keep gRPC's
  // default of 4 MiB at least).
  builder.SetMaxReceiveMessageSize(std::max(o.max_request_bytes, 4 << 20));
  builder.RegisterService(server->service_.get());
  // v1alpha from gRPC's plugin; v1 our own.
  builder.SetOption(std::make_unique<ReflectionPluginOption>(o.reflection));
  if (o.reflection) {
    server->reflection_v1_ = std::make_unique<ReflectionV1>(
        std::vector<std::string>{kRankerServiceName, "grpc.health.v1.Health",
                                 "grpc.reflection.v1.ServerReflection",
                                 "grpc.reflection.v1alpha.ServerReflection"});
    builder.RegisterService(server->reflection_v1_.get());
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", o.address,
        ": the address is in use (another server?), or not an address of this host"));
  }
  if (!o.admin_address.empty()) {
    server->admin_service_ = std::make_unique<FeedAdminService>(server.get());
    grpc::ServerBuilder admin;
    admin.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    auto admin_credentials = MakeServerCredentials(o.tls, /*mutual=*/true, *o.env.fs);
    if (!admin_credentials.ok()) {
      server->server_->Shutdown();
      return admin_credentials.status();
    }
    admin.AddListeningPort(o.admin_address, *admin_credentials, &server->admin_port_);
    // A config file may be up to 16 MiB (ReadConfigFile's limit).
    admin.SetMaxReceiveMessageSize(17 << 20);
    admin.RegisterService(server->admin_service_.get());
    server->admin_server_ = admin.BuildAndStart();
    if (server->admin_server_ == nullptr || server->admin_port_ == 0) {
      server->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", o.admin_address,
          " (--admin-address): the address is in use, or not an address of this host"));
    }
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kRankerServiceName, false);
  health->SetServingStatus(kLivenessServiceName, true);
  if (!o.metrics_address.empty()) {
    FeedServer* s = server.get();
    ASSIGN_OR_RETURN(server->monitoring_,
                     MonitoringServer::Start(
                         o.metrics_address, [s] { return s->metrics_->Collect(); },
                         [s] { return s->NotReadyReason(); }));
  }
  LogInfo(
      "listening on %s (port %d, %s), %d ranking threads%s%s; not serving until a bundle "
      "is loaded",
      o.address, server->port_, o.tls.enabled() ? "TLS" : "plaintext",
      server->workers_->threads(),
      server->monitoring_ != nullptr
          ? absl::StrFormat("; metrics on %s (port %d)", o.metrics_address,
                            server->monitoring_->port())
          : std::string(),
      server->admin_server_ != nullptr
          ? absl::StrFormat(
                "; admin on %s (port %d%s%s)", o.admin_address, server->admin_port_,
                o.tls.client_ca_file.empty() ? (o.tls.enabled() ? ", TLS" : "")
                                             : ", mutual TLS",
                o.admin_token.empty() ? "" : ", token required")
          : std::string());
  return server;
}

FeedServer::~FeedServer() { Shutdown(); }

std::string FeedServer::NotReadyReason() const {
  if (draining_.load()) return "draining";
  if (!ready_.load()) return "no bundle loaded yet";
  return "";
}

void FeedServer::SetReady(bool ready) {
  absl::MutexLock lock(&state_mu_);
  if (shutting_down_ || server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kRankerServiceName, ready);
  health->SetServingStatus("", ready);
  ready_.store(ready);
}

std::string FeedServer::VersionDir(int64_t version) const {
  return BundlePath(options_.bundle_root, std::to_string(version));
}

absl::StatusOr<std::vector<int64_t>> FeedServer::ListVersions() const {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   options_.env.fs->ListDir(options_.bundle_root));
  std::vector<int64_t> versions;
  for (const std::string& name : names) {
    int64_t v;
    // Numbered directories only ("7", not "7.partial-123" or "latest").
    if (name.find_first_not_of("0123456789") != std::string::npos ||
        !absl::SimpleAtoi(name, &v) || v < 0) {
      continue;
    }
    auto info = options_.env.fs->Stat(VersionDir(v));
    if (info.ok() && info->is_directory) versions.push_back(v);
  }
  std::sort(versions.rbegin(), versions.rend());
  return versions;
}

namespace {

// Errors of reading a bundle that say nothing about its contents: the same
// files may load once the disk or the permissions are fixed.
bool IsTransientLoadError(const absl::Status& s) {
  return absl::IsPermissionDenied(s) || absl::IsUnavailable(s) ||
         absl::IsResourceExhausted(s) || absl::IsAborted(s) ||
         absl::IsDeadlineExceeded(s);
}

}  // namespace

absl::Status FeedServer::LoadNewerVersion(int64_t above, bool initial, bool forced) {
  reload_mu_.AssertHeld();
  auto versions = ListVersions();
  if (!versions.ok()) {
    LogError("bundle root %s: %s", options_.bundle_root, versions.status().ToString());
    return versions.status();
  }
  InterruptibleFileSystem fs(options_.env.fs, &stop_loading_);
  absl::Status last = absl::OkStatus();
  for (int64_t version : *versions) {
    if (version <= above) break;
    const std::string dir = VersionDir(version);
    // A version refused before is retried only once its manifest changed
    // (e.g. a copy that was still in progress has finished).
    auto manifest = options_.env.fs->Stat(BundlePath(dir, kManifestFile));
    FileInfo state = manifest.ok() ? *manifest : FileInfo();
    auto refused = refused_versions_.find(version);
    const SteadyTime now = options_.env.clock->Now();
    if (refused != refused_versions_.end() && refused->second.state.SameAs(state) &&
        !(refused->second.transient && (forced || now >= refused->second.retry_at))) {
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = initial ? snapshots_->Load(dir, options_.config_path, &fs)
                                  : snapshots_->SwapBundle(dir, &fs);
    const int64_t micros = MicrosBetween(start, std::chrono::steady_clock::now());
    if (absl::IsCancelled(status)) return status;
    metrics_->RecordLoad(LoadKind::kBundle,
                         status.ok() ? LoadOutcome::kOk : LoadOutcome::kRefused, micros);
    if (status.ok()) {
      served_version_.store(version);
      refused_versions_.erase(version);
      if (initial && !options_.config_path.empty()) {
        if (auto info = options_.env.fs->Stat(options_.config_path); info.ok())
          config_seen_ = *info;
      }
      return absl::OkStatus();
    }
    Refusal& refusal = refused_versions_[version];
    const bool again = refusal.transient && refusal.state.SameAs(state);
    refusal.state = state;
    refusal.transient = IsTransientLoadError(status);
    refusal.backoff = again ? std::min(refusal.backoff * 2, absl::Minutes(5))
                            : std::max(options_.watch_interval, absl::Seconds(1));
    refusal.retry_at = now + absl::ToChronoNanoseconds(refusal.backoff);
    if (refusal.transient) {
      LogWarning("bundle version %d: %s; retrying in %s (or at a reload)", version,
                 status.message(), absl::FormatDuration(refusal.backoff));
    }
    last = status;
    if (!initial) return status;  // the newest changed version was refused
  }
  if (initial) {
    return last.ok()
               ? absl::NotFoundError(absl::StrCat("bundle root ", options_.bundle_root,
                                                  ": no numbered version directory"))
               : last;
  }
  return absl::OkStatus();
}

absl::Status FeedServer::Load() {
  absl::Status status;
  {
    MutexLock lock(&reload_mu_);
    const auto start = std::chrono::steady_clock::now();
    if (!options_.bundle_root.empty()) {
      status = LoadNewerVersion(-1, /*initial=*/true, /*forced=*/true);
    } else {
      // A stop interrupts the reads of a load in progress.
      InterruptibleFileSystem fs(options_.env.fs, &stop_loading_);
      status = snapshots_->Load(options_.bundle_dir, options_.config_path, &fs);
      if (!absl::IsCancelled(status)) {
        metrics_->RecordLoad(LoadKind::kBundle,
                             status.ok() ? LoadOutcome::kOk : LoadOutcome::kRefused,
                             MicrosBetween(start, std::chrono::steady_clock::now()));
      }
      if (status.ok() && !options_.config_path.empty()) {
        if (auto info = options_.env.fs->Stat(options_.config_path); info.ok())
          config_seen_ = *info;
      }
    }
    if (status.ok()) PublishServing();
  }
  if (!status.ok()) return status;
  SetReady(true);
  // The watcher starts under state_mu_: a Shutdown that begins after the
  // check below then sees it and joins it, and one that began before is
  // seen here (starting it after the lock let a SIGTERM during Load leave
  // it unjoined).
  absl::MutexLock lock(&state_mu_);
  if (shutting_down_ || watcher_.joinable() || guardrail_watcher_.joinable() ||
      compaction_watcher_.joinable())
    return status;
  if (live_ != nullptr && !options_.bundle_root.empty() &&
      (options_.live.compact_threshold > 0 ||
       options_.live.compact_event_threshold > 0) &&
      options_.compact_interval > absl::ZeroDuration())
    compaction_watcher_ = std::thread([this] { WatchCompaction(); });
  if (options_.watch_interval > absl::ZeroDuration())
    watcher_ = std::thread([this] { Watch(); });
  if (options_.guardrail_interval > absl::ZeroDuration())
    guardrail_watcher_ = std::thread([this] { WatchGuardrails(); });
  return status;
}

absl::Status FeedServer::CheckConfigFile(bool force) {
  reload_mu_.AssertHeld();
  if (options_.config_path.empty()) return absl::OkStatus();
  auto info = options_.env.fs->Stat(options_.config_path);
  if (!info.ok()) {
    // A file being replaced may be missing for an instant; a missing file
    // is reported only when a reload is asked for.
    if (force) LogError("config %s: %s", options_.config_path, info.status().ToString());
    return force ? info.status() : absl::OkStatus();
  }
  if (!force && config_seen_.has_value() && config_seen_->SameAs(*info))
    return absl::OkStatus();
  config_seen_ = *info;  // refused or not, this version has been seen
  const auto start = std::chrono::steady_clock::now();
  InterruptibleFileSystem fs(options_.env.fs, &stop_loading_);
  absl::Status status = snapshots_->ReloadConfig(options_.config_path, &fs);
  if (absl::IsCancelled(status)) return status;
  if (!status.ok()) metrics_->RecordConfigRefusal("file", ConfigRefusalReason(status));
  metrics_->RecordLoad(LoadKind::kConfig,
                       status.ok() ? LoadOutcome::kOk : LoadOutcome::kRefused,
                       MicrosBetween(start, std::chrono::steady_clock::now()));
  return status;
}

absl::Status FeedServer::Reload() {
  MutexLock lock(&reload_mu_);
  if (snapshots_->Current() == nullptr) {
    return absl::FailedPreconditionError("nothing loaded yet to reload");
  }
  absl::Status config = CheckConfigFile(/*force=*/true);
  absl::Status bundle = absl::OkStatus();
  if (!options_.bundle_root.empty()) {
    bundle = LoadNewerVersion(served_version_.load(), /*initial=*/false, /*forced=*/true);
  }
  PublishServing();
  return !config.ok() ? config : bundle;
}

void FeedServer::Watch() {
  while (true) {
    {
      MutexLock lock(&watch_mu_);
      if (watch_cv_.WaitFor(
              &watch_mu_, absl::ToChronoNanoseconds(options_.watch_interval),
              [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) { return watch_stop_; })) {
        return;
      }
    }
    MutexLock lock(&reload_mu_);
    CheckConfigFile(/*force=*/false).IgnoreError();
    if (!options_.bundle_root.empty()) {
      LoadNewerVersion(served_version_.load(), /*initial=*/false).IgnoreError();
    }
    PublishServing();
    ReleaseRetiredBundleMemory();
  }
}

void FeedServer::ReleaseRetiredBundleMemory() {
  std::shared_ptr<const Snapshot> s = snapshots_->Current();
  const Bundle* served = s == nullptr ? nullptr : s->bundle.get();
  if (served != watched_bundle_) {
    // A new bundle (a swap or a compaction; not the first one seen): the old
    // one is freed when its last calls end, which the next tick will have
    // seen.
    trim_due_ = watched_bundle_ != nullptr;
    watched_bundle_ = served;
    return;
  }
  if (!trim_due_) return;
  trim_due_ = false;
  // malloc keeps freed heap pages: without this, a bundle swap leaves the
  // old bundle's small allocations (IVF lists, id maps) resident, and RSS
  // ratchets up by about a bundle over the first swaps (scripts/soak.sh).
  const auto start = std::chrono::steady_clock::now();
  const int64_t before = ResidentBytes();
  ::malloc_trim(0);
  LogInfo(
      "returned freed memory to the system after a bundle swap: resident %.1f -> %.1f MB "
      "(%.1f ms)",
      before / 1048576.0, ResidentBytes() / 1048576.0,
      MicrosBetween(start, std::chrono::steady_clock::now()) / 1000.0);
}

void FeedServer::PublishServing() {
  std::shared_ptr<const Snapshot> s = snapshots_->Current();
  if (s == nullptr) return;
  metrics_->SetServing(s->bundle->manifest.version(), s->bundle->dir,
                       s->config.version());
  std::vector<ServedBundle> bundles;
  bundles.push_back(
      {"default", s->bundle->manifest.version(), s->bundle->dir, s->bundle->file_bytes});
  for (const auto& [name, b] : s->extra_bundles)
    bundles.push_back({name, b->manifest.version(), b->dir, b->file_bytes});
  metrics_->SetBundles(std::move(bundles));
  metrics_->SetObjectives(s->bundle->model->objectives());
}

void FeedServer::WatchGuardrails() {
  while (true) {
    {
      MutexLock lock(&watch_mu_);
      if (watch_cv_.WaitFor(
              &watch_mu_, absl::ToChronoNanoseconds(options_.guardrail_interval),
              [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) { return watch_stop_; })) {
        return;
      }
    }
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
    guardrails_->Tick(now_ms);
  }
}

void FeedServer::WatchCompaction() {
  while (true) {
    {
      MutexLock lock(&watch_mu_);
      if (watch_cv_.WaitFor(
              &watch_mu_, absl::ToChronoNanoseconds(options_.compact_interval),
              [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) { return watch_stop_; })) {
        return;
      }
    }
    if (live_->CompactionDue()) Compact().IgnoreError();
  }
}

absl::Status FeedServer::Compact(v1::CompactionInfo* out) {
  if (live_ == nullptr) {
    return absl::FailedPreconditionError("live updates are off (no --wal-dir)");
  }
  if (options_.bundle_root.empty()) {
    return absl::FailedPreconditionError(
        "compaction writes a new version under --bundle-root; the server serves a fixed "
        "--bundle");
  }
  MutexLock compact_lock(&compact_mu_);
  compacting_.store(true);
  const auto start = std::chrono::steady_clock::now();
  v1::CompactionInfo info;
  info.set_started_unix_ms(options_.env.clock->UnixMillis());
  auto fail = [&](const absl::Status& status) {
    info.set_error(std::string(status.message()));
    info.set_seconds(double(MicrosBetween(start, std::chrono::steady_clock::now())) /
                     1e6);
    LogError("compaction failed (still serving what was served): %s", status.ToString());
    live_->FinishCompaction(CompactionPlan(), info);
    compacting_.store(false);
    if (out != nullptr) *out = info;
    return status;
  };
  auto plan = live_->PlanCompaction();
  if (!plan.ok()) return fail(plan.status());
  auto versions = ListVersions();
  if (!versions.ok()) return fail(versions.status());
  const int64_t version = versions->empty() ? 1 : versions->front() + 1;
  const std::string dir = VersionDir(version);
  const std::string name =
      absl::StrCat(plan->bundle->manifest.version(), "+live", plan->through_sequence);
  LogInfo(
      "compaction: folding %d live videos (through update %d) of bundle %s into version "
      "%d (%s)",
      plan->view->num_live_videos(), plan->through_sequence,
      plan->bundle->manifest.version(), version, dir);
  info.set_bundle_version(name);
  info.set_dir(dir);
  info.set_videos(plan->view->num_live_videos());
  info.set_through_sequence(plan->through_sequence);
  InterruptibleFileSystem fs(options_.env.fs, &stop_loading_);
  absl::Status written =
      WriteCompactedBundle(*plan, dir, name, options_.live.compact_threads,
                           options_.env.clock->UnixMillis(), fs, &stop_loading_);
  if (!written.ok()) return fail(written);
  {
    MutexLock lock(&reload_mu_);
    absl::Status loaded = LoadNewerVersion(served_version_.load(), /*initial=*/false);
    PublishServing();
    if (!loaded.ok()) return fail(loaded);
  }
  info.set_seconds(double(MicrosBetween(start, std::chrono::steady_clock::now())) / 1e6);
  live_->FinishCompaction(*plan, info);
  compacting_.store(false);
  if (out != nullptr) *out = info;
  LogInfo("compaction: version %d (%s) served after %.1f s", version, name,
          info.seconds());
  return absl::OkStatus();
}

grpc::Status FeedServer::ApplyLive(const v1::LiveUpdateRecord& batch,
                                   v1::UpdateResponse* response) {
  auto result = snapshots_->ApplyLive(batch);
  if (!result.ok()) return ToGrpc(result.status());
  response->set_sequence(result->sequence);
  response->set_catalog_version(result->catalog_version);
  const ApplyStats& s = result->stats;
  response->set_inserted(s.inserted + s.users_inserted);
  response->set_replaced(s.replaced + s.users_replaced);
  response->set_deleted(s.deleted);
  response->set_unknown(s.unknown_deletes);
  response->set_events(static_cast<uint32_t>(result->events));
  return grpc::Status::OK;
}

grpc::Status FeedServer::GetStatus(v1::GetStatusResponse* response) {
  std::shared_ptr<const Snapshot> s = snapshots_->Current();
  if (s == nullptr) return ToGrpc(absl::FailedPreconditionError("no bundle loaded yet"));
  response->set_bundle_version(s->bundle->manifest.version());
  response->set_bundle_dir(s->bundle->dir);
  response->set_config_version(s->config.version());
  response->set_catalog_version(s->view->version());
  response->set_base_videos(s->bundle->catalog->num_videos());
  response->set_live_videos(s->view->num_live_videos());
  if (live_ != nullptr) {
    live_->Status(response);
    response->set_compaction_running(compacting_.load());
  }
  return grpc::Status::OK;
}

namespace {

void AddShares(const std::vector<ArmShare>& shares,
               google::protobuf::RepeatedPtrField<v1::ArmShareInfo>* out) {
  for (const ArmShare& share : shares) {
    v1::ArmShareInfo* info = out->Add();
    info->set_layer(share.layer);
    info->set_experiment(share.experiment);
    info->set_arm(share.arm);
    info->set_buckets(share.buckets);
    info->set_share(share.share);
  }
}

}  // namespace

grpc::Status FeedServer::ApplyConfig(const v1::ApplyConfigRequest& request,
                                     v1::ApplyConfigResponse* response) {
  auto refuse = [&](const absl::Status& status) {
    if (!request.dry_run()) {
      metrics_->RecordConfigRefusal("admin", ConfigRefusalReason(status));
      metrics_->RecordLoad(LoadKind::kConfig, LoadOutcome::kRefused, 0);
    }
    return ToGrpc(status);
  };
  auto config = ParseConfig(request.config_text());
  if (!config.ok()) {
    LogError("applied config refused: %s", config.status().ToString());
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("config_text: ", config.status().message())));
  }
  MutexLock lock(&reload_mu_);
  std::shared_ptr<const Snapshot> current = snapshots_->Current();
  if (current == nullptr) {
    return ToGrpc(absl::FailedPreconditionError("no bundle loaded yet"));
  }
  response->set_previous_version(current->config.version());
  if (!request.expected_version().empty() &&
      request.expected_version() != current->config.version()) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "expected_version '", request.expected_version(), "' but config '",
        current->config.version(), "' is served; read it again (GetConfig) and retry")));
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string& path = options_.config_path;
  auto shares = snapshots_->ApplyConfig(
      *config, request.dry_run(), path.empty() ? "admin" : "file", [&]() -> absl::Status {
        if (path.empty()) return absl::OkStatus();
        absl::Status written =
            WriteFileAtomically(*options_.env.fs, path, {request.config_text()});
        if (!written.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "config file ", path,
              " cannot be written, so the applied config would "
              "not survive a reload or restart (the file is the source of truth): ",
              written.message()));
        }
        // The watcher must not count our own write as a change. (Called
        // within ApplyConfig, under reload_mu_.)
        reload_mu_.AssertHeld();
        if (auto info = options_.env.fs->Stat(path); info.ok()) config_seen_ = *info;
        return absl::OkStatus();
      });
  if (!shares.ok()) return refuse(shares.status());
  response->set_config_version(config->version());
  response->set_applied(!request.dry_run());
  AddShares(*shares, response->mutable_shares());
  if (!request.dry_run()) {
    metrics_->RecordLoad(LoadKind::kConfig, LoadOutcome::kOk,
                         MicrosBetween(start, std::chrono::steady_clock::now()));
    PublishServing();
    LogInfo("config '%s' applied through FeedAdmin%s (was '%s')", config->version(),
            path.empty() ? "" : absl::StrCat(", written to ", path),
            current->config.version());
  }
  return grpc::Status::OK;
}

grpc::Status FeedServer::GetConfig(v1::GetConfigResponse* response) {
  std::shared_ptr<const Snapshot> s = snapshots_->Current();
  if (s == nullptr) return ToGrpc(absl::FailedPreconditionError("no bundle loaded yet"));
  response->set_config_version(s->config.version());
  std::string text;
  google::protobuf::TextFormat::PrintToString(s->config, &text);
  response->set_config_text(text);
  response->set_source(s->config_source);
  response->set_config_path(options_.config_path);
  auto add_bundle = [&](const std::string& name, const Bundle& b) {
    v1::BundleInfo* info = response->add_bundles();
    info->set_name(name);
    info->set_dir(b.dir);
    info->set_version(b.manifest.version());
    info->set_videos(b.catalog->num_videos());
    info->set_users(b.catalog->num_users());
    info->set_file_bytes(b.file_bytes);
  };
  add_bundle("default", *s->bundle);
  for (const auto& [name, b] : s->extra_bundles) add_bundle(name, *b);
  AddShares(BucketShares(*s->experiments), response->mutable_shares());
  for (const RevertedArm& r : snapshots_->reverted()) {
    v1::RevertedArmInfo* out = response->add_reverted();
    out->set_layer(r.layer);
    out->set_experiment(r.experiment);
    out->set_arm(r.arm);
    out->set_reverted_to(r.reverted_to);
    out->set_reason(r.reason);
    out->set_unix_ms(r.unix_ms);
  }
  response->set_resident_bytes(ResidentBytes());
  return grpc::Status::OK;
}

grpc::Status FeedAdminService::Authorize(grpc::ServerContext* context) const {
  const std::string& token = server_->options_.admin_token;
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  const std::string expected = "Bearer " + token;
  if (it != metadata.end() && it->second.size() == expected.size()) {
    // Constant time in the token's bytes.
    unsigned char diff = 0;
    for (size_t i = 0; i < expected.size(); ++i)
      diff |= static_cast<unsigned char>(it->second.data()[i] ^ expected[i]);
    if (diff == 0) return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      "admin calls need the metadata 'authorization: Bearer <token>' with "
      "the token of --admin-token-file");
}

grpc::Status FeedAdminService::ApplyConfig(grpc::ServerContext* context,
                                           const v1::ApplyConfigRequest* request,
                                           v1::ApplyConfigResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  return server_->ApplyConfig(*request, response);
}

grpc::Status FeedAdminService::GetConfig(grpc::ServerContext* context,
                                         const v1::GetConfigRequest*,
                                         v1::GetConfigResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  return server_->GetConfig(response);
}

grpc::Status FeedAdminService::UpsertVideos(grpc::ServerContext* context,
                                            const v1::UpsertVideosRequest* request,
                                            v1::UpdateResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  v1::LiveUpdateRecord batch;
  *batch.mutable_videos() = request->videos();
  return server_->ApplyLive(batch, response);
}

grpc::Status FeedAdminService::DeleteVideos(grpc::ServerContext* context,
                                            const v1::DeleteVideosRequest* request,
                                            v1::UpdateResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  v1::LiveUpdateRecord batch;
  *batch.mutable_deletes() = request->ids();
  return server_->ApplyLive(batch, response);
}

grpc::Status FeedAdminService::UpsertUsers(grpc::ServerContext* context,
                                           const v1::UpsertUsersRequest* request,
                                           v1::UpdateResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  v1::LiveUpdateRecord batch;
  *batch.mutable_users() = request->users();
  return server_->ApplyLive(batch, response);
}

grpc::Status FeedAdminService::RecordEvents(grpc::ServerContext* context,
                                            const v1::RecordEventsRequest* request,
                                            v1::UpdateResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  v1::LiveUpdateRecord batch;
  *batch.mutable_events() = request->events();
  return server_->ApplyLive(batch, response);
}

grpc::Status FeedAdminService::Compact(grpc::ServerContext* context,
                                       const v1::CompactRequest*,
                                       v1::CompactionInfo* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  return ToGrpc(server_->Compact(response));
}

grpc::Status FeedAdminService::GetStatus(grpc::ServerContext* context,
                                         const v1::GetStatusRequest*,
                                         v1::GetStatusResponse* response) {
  if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
  return server_->GetStatus(response);
}

void FeedServer::Shutdown() {
  bool first = false;
  stop_loading_.store(true, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&state_mu_);
    if (!shutting_down_) {
      shutting_down_ = true;
      first = true;
      draining_.store(true);
      if (server_ != nullptr) {
        grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
        health->SetServingStatus(kRankerServiceName, false);
        health->SetServingStatus("", false);
      }
    }
  }
  if (!first) {  // another caller is draining: return once it is done
    stopped_.WaitForNotification();
    return;
  }
  {
    MutexLock lock(&watch_mu_);
    watch_stop_ = true;
  }
  watch_cv_.SignalAll();
  if (watcher_.joinable()) watcher_.join();
  if (guardrail_watcher_.joinable()) guardrail_watcher_.join();
  // A compaction in progress stops (stop_loading_ interrupts its build and
  // its writes; nothing half-written is served).
  if (compaction_watcher_.joinable()) compaction_watcher_.join();
  // Admin calls in progress finish first (they take reload_mu_).
  if (admin_server_ != nullptr) {
    admin_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    admin_server_->Wait();
  }
  if (server_ != nullptr) {
    LogInfo(
        "draining: readiness NOT_SERVING, calls answered for %s more, then up to %s for "
        "in-flight calls",
        absl::FormatDuration(options_.drain_grace),
        absl::FormatDuration(options_.drain_timeout));
    // The grace lets load balancers see NOT_SERVING and move away; a server
    // that never was ready has nobody to move.
    if (options_.drain_grace > absl::ZeroDuration() && ready_.load()) {
      absl::SleepFor(options_.drain_grace);
    }
    // Calls already queued still run; new ones are refused.
    service_->StartDraining();
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoNanoseconds(options_.drain_timeout));
    server_->Wait();
    LogInfo("stopped");
  }
  // A scrape after this must not read the pool it is about to lose.
  metrics_->SetQueueDepth(nullptr);
  workers_.reset();
  // Every call has finished: write what is queued and close the file.
  if (request_log_ != nullptr) {
    request_log_->Close();
    const RequestLogCounts c = request_log_->counts();
    LogInfo("request log %s closed: %d records written, %d dropped, %d failed",
            options_.request_log.path, c.written, c.dropped, c.failed);
  }
  monitoring_.reset();
  access_log_.reset();
  stopped_.Notify();
}

void FeedServer::Wait() { stopped_.WaitForNotification(); }

}  // namespace feedrank
