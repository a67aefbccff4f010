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
  // Larger requests get RESOURCE_EXHAUSTED from gRPC itself.
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
};

// Handlers validate nothing on gRPC's threads: each call is queued to the
// worker pool, which ranks it and finishes the call.
class FeedRankerService final : public v1::FeedRanker::CallbackService {
 public:
  FeedRankerService(const SnapshotManager* snapshots, WorkerPool* workers)
      : snapshots_(snapshots), workers_(workers) {}

  grpc::ServerUnaryReactor* RankFeed(grpc::CallbackServerContext* context,
                                     const v1::RankFeedRequest* request,
                                     v1::RankFeedResponse* response) override;

  // After this, RankFeed answers UNAVAILABLE.
  void StartDraining() { draining_.store(true, std::memory_order_release); }

 private:
  grpc::Status Handle(grpc::CallbackServerContext* context,
                      const v1::RankFeedRequest& request,
                      v1::RankFeedResponse* response);

  const SnapshotManager* snapshots_;
  WorkerPool* workers_;
  std::atomic<bool> draining_{false};
};

class FeedServer {
 public:
  // Binds `options.address` and starts serving (not yet ready).
  // Errors: Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<FeedServer>> Start(ServerOptions options);

  ~FeedServer();

  // Loads options.bundle_dir with the config file and goes SERVING. On error
  // the previous snapshot (if any) keeps serving.
  absl::Status Load();

  // Drains and stops. Idempotent and thread-safe: every caller returns once
  // the server has stopped.
  void Shutdown();

  // Blocks until Shutdown() has completed.
  void Wait();

  int port() const { return port_; }
  SnapshotManager& snapshots() { return snapshots_; }

 private:
  FeedServer() = default;

  ServerOptions options_;
  SnapshotManager snapshots_;
  std::unique_ptr<WorkerPool> workers_;  // outlives every call
  std::unique_ptr<FeedRankerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // Orders the health flips of Load() and Shutdown().
  absl::Mutex state_mu_;
  bool shutting_down_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Notification stopped_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_FEED_SERVER_H_
