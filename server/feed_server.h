// FeedServer: the gRPC server of feedrank. Serves feedrank.v1.FeedRanker
// with the callback API, the standard health service (NOT_SERVING until a
// bundle is loaded and again while draining) and server reflection.
//
// Life cycle: Start() binds and serves (RankFeed answers UNAVAILABLE until
// Load() succeeds) -> Load() -> ... -> Shutdown() drains: health goes
// NOT_SERVING, new RankFeed calls get UNAVAILABLE after `drain_grace`, and
// in-flight calls get up to `drain_timeout` to finish.
//
// Thread-safety: Load and Shutdown may be called from any thread.
#ifndef FEEDRANK_SERVER_FEED_SERVER_H_
#define FEEDRANK_SERVER_FEED_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/snapshot_manager.h"
#include "server/worker_pool.h"

namespace feedrank {

inline constexpr char kRankerServiceName[] = "feedrank.v1.FeedRanker";

struct ServerOptions {
  // host:port; port 0 picks a free port (see FeedServer::port()).
  std::string address = "0.0.0.0:50051";
  std::string bundle_dir;
  // Textproto RankingConfig; empty = all defaults.
  std::string config_path;
  // Larger RankFeed requests get RESOURCE_EXHAUSTED. Checked by the handler
  // itself, so health checks and reflection are not subject to it.
  int max_request_bytes = 4 << 20;
  // Time between going NOT_SERVING and refusing calls, so load balancers
  // that poll health stop sending first.
  absl::Duration drain_grace = absl::ZeroDuration();
  // Longest wait for in-flight calls on shutdown.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Ranking threads (0 = one per hardware thread) and the most calls that
  // may wait for one (0 = 64 per thread); beyond that, UNAVAILABLE.
  int workers = 0;
  int max_queue = 0;
  // Clock (deadlines, the default request time) and file system (loads).
  // Borrowed; must outlive the server.
  Env env;
};

// Counts of what the service did, readable while it runs.
struct ServiceCounters {
  // Calls finished, by gRPC status code (0..16).
  std::atomic<int64_t> by_code[17] = {};
  // Calls the client cancelled while they waited for a worker (not ranked).
  std::atomic<int64_t> cancelled_in_queue{0};
  // Calls refused because the queue was full.
  std::atomic<int64_t> overloaded{0};
};

// RankFeed as a raw (ByteBuffer) callback method: the worker parses the
// request itself, so a body that does not parse gets INVALID_ARGUMENT with a
// message instead of gRPC's bare UNIMPLEMENTED, an exclude list longer than
// allowed is refused before it is decoded, and request and response live in
// a per-thread protobuf arena. gRPC's threads only queue calls; the worker
// pool ranks them and finishes them.
class FeedRankerService final
    : public v1::FeedRanker::WithRawCallbackMethod_RankFeed<v1::FeedRanker::Service> {
 public:
  FeedRankerService(const SnapshotManager* snapshots, WorkerPool* workers,
                    const ServerOptions* options)
      : snapshots_(snapshots), workers_(workers), options_(options) {}

  grpc::ServerUnaryReactor* RankFeed(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

  // After this, RankFeed answers UNAVAILABLE.
  void StartDraining() { draining_.store(true, std::memory_order_release); }

  const ServiceCounters& counters() const { return counters_; }

 private:
  grpc::Status Handle(grpc::CallbackServerContext* context,
                      const grpc::ByteBuffer& request, SteadyTime deadline,
                      grpc::ByteBuffer* response);
  void Finish(grpc::ServerUnaryReactor* reactor, const grpc::Status& status);

  const SnapshotManager* snapshots_;
  WorkerPool* workers_;
  const ServerOptions* options_;
  std::atomic<bool> draining_{false};
  ServiceCounters counters_;
};

class FeedServer {
 public:
  // Binds `options.address` and starts serving (not yet ready).
  // Errors: InvalidArgument for bad options; Unavailable when the address
  // cannot be bound; ResourceExhausted when the workers cannot start.
  static absl::StatusOr<std::unique_ptr<FeedServer>> Start(ServerOptions options);

  ~FeedServer();

  // Loads options.bundle_dir with the config file and goes SERVING. On error
  // the previous snapshot (if any) keeps serving. A Shutdown() during the
  // load interrupts it (Cancelled).
  absl::Status Load();

  // Drains and stops. Idempotent and thread-safe: every caller returns once
  // the server has stopped.
  void Shutdown();

  // Blocks until Shutdown() has completed.
  void Wait();

  int port() const { return port_; }
  SnapshotManager& snapshots() { return *snapshots_; }
  WorkerPool& workers() { return *workers_; }
  const ServiceCounters& counters() const { return service_->counters(); }

 private:
  FeedServer() = default;

  ServerOptions options_;
  std::unique_ptr<SnapshotManager> snapshots_;
  std::unique_ptr<WorkerPool> workers_;  // outlives every call
  std::unique_ptr<FeedRankerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // Set by Shutdown: interrupts a load in progress.
  std::atomic<bool> stop_loading_{false};
  // Orders the health flips of Load() and Shutdown().
  absl::Mutex state_mu_;
  bool shutting_down_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Notification stopped_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_FEED_SERVER_H_
