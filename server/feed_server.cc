#include "server/feed_server.h"

#include <google/protobuf/arena.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/codegen/proto_buffer_reader.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <omp.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/status_macros.h"
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
  // Checked here, not when a worker takes the call: calls accepted before
  // draining began still get ranked.
  if (draining_.load(std::memory_order_acquire)) {
    Finish(reactor,
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return reactor;
  }
  // The deadline on the server's clock, taken at arrival: time spent queued
  // counts against it.
  SteadyTime deadline = SteadyTime::max();
  const auto grpc_deadline = context->deadline();
  if (grpc_deadline != std::chrono::system_clock::time_point::max()) {
    deadline = options_->env.clock->Now() +
               std::chrono::duration_cast<SteadyTime::duration>(
                   grpc_deadline - std::chrono::system_clock::now());
  }
  const bool queued =
      workers_->TrySubmit([this, context, request, response, reactor, deadline] {
        Finish(reactor, Handle(context, *request, deadline, response));
      });
  if (!queued) {
    counters_.overloaded.fetch_add(1, std::memory_order_relaxed);
    Finish(reactor, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 absl::StrCat("overloaded: ", workers_->queued(),
                                              " calls already queued")));
  }
  return reactor;
}

void FeedRankerService::Finish(grpc::ServerUnaryReactor* reactor,
                               const grpc::Status& status) {
  const int code = static_cast<int>(status.error_code());
  if (code >= 0 && code < 17)
    counters_.by_code[code].fetch_add(1, std::memory_order_relaxed);
  reactor->Finish(status);
}

grpc::Status FeedRankerService::Handle(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer& request_bytes,
                                       SteadyTime deadline,
                                       grpc::ByteBuffer* response_bytes) {
  if (context->IsCancelled()) {
    counters_.cancelled_in_queue.fetch_add(1, std::memory_order_relaxed);
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
  const int max_exclude = snapshot->ranker->options().max_exclude_ids;
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
  RankRequest rank;
  if (absl::Status status = RankRequestFromProto(*request, *options_->env.clock, &rank);
      !status.ok()) {
    return ToGrpc(status);
  }
  rank.deadline = deadline;

  thread_local RankResult result;
  if (absl::Status status = snapshot->ranker->Rank(*snapshot->view, rank, &result);
      !status.ok()) {
    return ToGrpc(status);
  }
  auto* response = google::protobuf::Arena::CreateMessage<v1::RankFeedResponse>(&arena);
  ResponseInfo info;
  info.objectives = &snapshot->bundle->model->objectives();
  info.bundle_version = snapshot->bundle->manifest.version();
  info.config_version = snapshot->config.version();
  info.catalog_version = snapshot->view->version();
  RankResultToProto(*request, result, info, response);
  bool own_buffer;
  return grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::RankFeedResponse>(
      *response, response_bytes, &own_buffer);
}

absl::StatusOr<std::unique_ptr<FeedServer>> FeedServer::Start(ServerOptions options) {
  if (options.max_request_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_request_bytes: ", options.max_request_bytes, " must be >= 1"));
  }
  if (options.env.clock == nullptr || options.env.fs == nullptr) {
    return absl::InvalidArgumentError("server: env needs a clock and a file system");
  }
  // Parallelism comes from concurrent requests; FAISS calls stay on one
  // OpenMP thread each.
  omp_set_num_threads(1);
  google::protobuf::SetLogHandler(&RateLimitedProtobufLog);
  std::unique_ptr<FeedServer> server(new FeedServer());
  server->options_ = std::move(options);
  const ServerOptions& o = server->options_;
  ASSIGN_OR_RETURN(server->workers_, WorkerPool::Create(o.workers, o.max_queue));
  server->snapshots_ = std::make_unique<SnapshotManager>(o.env);
  server->service_ = std::make_unique<FeedRankerService>(server->snapshots_.get(),
                                                         server->workers_.get(), &o);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.address, grpc::InsecureServerCredentials(), &server->port_);
  // RankFeed enforces max_request_bytes itself; gRPC's own limit only has to
  // let such requests through (health checks and reflection keep gRPC's
  // default of 4 MiB at least).
  builder.SetMaxReceiveMessageSize(std::max(o.max_request_bytes, 4 << 20));
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", o.address));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kRankerServiceName, false);
  LogInfo(
      "listening on %s (port %d), %d ranking threads; not serving until a bundle "
      "is loaded",
      o.address, server->port_, server->workers_->threads());
  return server;
}

FeedServer::~FeedServer() { Shutdown(); }

absl::Status FeedServer::Load() {
  // A stop interrupts the reads of a load in progress.
  InterruptibleFileSystem fs(options_.env.fs, &stop_loading_);
  absl::Status status = snapshots_->Load(options_.bundle_dir, options_.config_path, &fs);
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
  stop_loading_.store(true, std::memory_order_relaxed);
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
