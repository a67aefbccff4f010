// FeedServer: the gRPC server of feedrank. Serves feedrank.v1.FeedRanker
// with the callback API, the standard health service and server reflection,
// and, on an HTTP address of its own, Prometheus metrics, liveness and
// readiness (server/monitoring.h).
//
// Life cycle: Start() binds (exclusively: a second server on the same port
// fails to start) and serves; RankFeed answers UNAVAILABLE until Load()
// succeeds. Load() serves `bundle_dir`, or the highest valid numbered
// version under `bundle_root`. While running, a watcher thread notices a new
// version in the root and a changed config file (polling every
// `watch_interval`; an atomic rename and a Kubernetes ConfigMap's symlink
// swap are changes too) and loads them off the request path; Reload() does
// the same at once (SIGHUP). A refused bundle or config changes nothing and
// is logged and counted (feedrank_loads_total{outcome="refused"}). A SWAP
// NEVER FAILS, DROPS OR MIXES A CALL: each call ranks on the snapshot it
// took. Shutdown() drains: readiness goes NOT_SERVING at once (liveness
// stays SERVING), calls are still answered for `drain_grace` so load
// balancers move away, then new calls get UNAVAILABLE and in-flight ones get
// up to `drain_timeout`.
//
// Health service names: "" and "feedrank.v1.FeedRanker" are readiness;
// "liveness" is SERVING from Start to the end of Shutdown.
//
// Thread-safety: Load, Reload and Shutdown may be called from any thread.
#ifndef FEEDRANK_SERVER_FEED_SERVER_H_
#define FEEDRANK_SERVER_FEED_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "base/mutex.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "replay/request_log.h"
#include "server/access_log.h"
#include "server/guardrails.h"
#include "server/live_updates.h"
#include "server/metrics.h"
#include "server/monitoring.h"
#include "server/reflection_v1.h"
#include "server/snapshot_manager.h"
#include "server/tls.h"
#include "server/worker_pool.h"

namespace feedrank {

inline constexpr char kRankerServiceName[] = "feedrank.v1.FeedRanker";
inline constexpr char kLivenessServiceName[] = "liveness";

// Limits a public gRPC server sets on each connection.
struct ConnectionLimits {
  // Concurrent calls (HTTP/2 streams) per connection.
  int max_concurrent_streams = 256;
  // A connection with no call for this long is closed (GOAWAY).
  absl::Duration max_idle = absl::Minutes(5);
  // A connection is asked to go away after this long, so clients rebalance
  // across replicas (0 = never).
  absl::Duration max_age = absl::ZeroDuration();
  // A client must finish its TLS/HTTP2 handshake within this.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Keepalive policy: the server pings an idle client every `keepalive_time`
  // and drops it if no answer within `keepalive_timeout`; clients may ping
  // no more often than `min_client_ping_interval` (else GOAWAY).
  absl::Duration keepalive_time = absl::Hours(2);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Minutes(1);
};

struct ServerOptions {
  // host:port; port 0 picks a free port (see FeedServer::port()). Loopback
  // by default: listening on other interfaces is asked for, with TLS or
  // `plaintext`.
  std::string address = "127.0.0.1:50051";
  // Serving without TLS on an address other than loopback (or a unix socket)
  // must be asked for: behind a mesh sidecar or on a private network.
  // Without `tls` and without this, such an address is refused.
  bool plaintext = false;
  // One fixed bundle directory, or a root of numbered version directories
  // (1/, 2/, ...: the highest valid one is served). Exactly one is set.
  std::string bundle_dir;
  std::string bundle_root;
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
  // How often the bundle root and the config file are checked for changes
  // (0 = never; Reload() still works).
  absl::Duration watch_interval = absl::Seconds(2);
  // HTTP address of /metrics, /healthz and /readyz; empty = none.
  std::string metrics_address;
  AccessLogOptions access_log;
  // Sampled answered calls as replay records (replay/request_log.h); off
  // when the path is empty. Written through `env.fs`.
  RequestLogOptions request_log;
  ConnectionLimits limits;
  // Serve gRPC server reflection, v1 and v1alpha (grpcurl, the
  // reflection-based clients).
  bool reflection = true;
  // TLS for both services (server/tls.h); plaintext when it has no
  // certificate. With a client CA the admin service requires client
  // certificates it signed (mutual TLS).
  ServerTls tls;
  // host:port of the FeedAdmin service (feedrank.v1.FeedAdmin), a server of
  // its own; empty = none. A host other than loopback requires
  // `admin_token` or mutual TLS (tls.client_ca_file).
  std::string admin_address;
  // When set, admin calls must carry "authorization: Bearer <token>".
  std::string admin_token;
  // How often guardrails are checked (0 = never).
  absl::Duration guardrail_interval = absl::Seconds(1);
  // Live updates (docs/LIVE.md): on when live.wal_dir is set. The update
  // log goes through `env.fs`.
  LiveOptions live;
  // How often a due compaction is looked for (0 = never). Compaction writes
  // the next numbered version, so it needs `bundle_root`.
  absl::Duration compact_interval = absl::Seconds(5);
  // Clock (deadlines, the default request time) and file system (loads).
  // Borrowed; must outlive the server.
  Env env;
};

// Checks every option (ranges, one bundle source, addresses well-formed).
// Errors: InvalidArgument naming the option.
absl::Status ValidateServerOptions(const ServerOptions& options);

// What the handler learnt of a call, for its access-log line.
struct CallSummary {
  std::string request_id;
  // The per-arm metrics slots of the call's arms (none when pinned), and
  // what they record besides the code and latency.
  absl::InlinedVector<int16_t, 4> arm_slots;
  bool degraded = false;
  int objectives = 0;
  std::array<float, ServerMetrics::kMaxObjectives> mean_predictions{};
  uint64_t user_id = 0;
  int items = 0;
  uint32_t degrade_causes = 0;
  std::shared_ptr<const Snapshot> snapshot;
  // Set when the call was sampled for the request log; its latency is
  // filled in and it is submitted when the call finishes OK.
  std::optional<RequestLogEntry> log_entry;
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
                    const ServerOptions* options, ServerMetrics* metrics,
                    AccessLog* access_log, RequestLog* request_log = nullptr)
      : snapshots_(snapshots),
        workers_(workers),
        options_(options),
        metrics_(metrics),
        access_log_(access_log),
        request_log_(request_log) {}

  grpc::ServerUnaryReactor* RankFeed(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

  // After this, RankFeed answers UNAVAILABLE.
  void StartDraining() { draining_.store(true, std::memory_order_release); }

  // Calls the client cancelled while they waited for a worker (not ranked).
  int64_t cancelled_in_queue() const { return cancelled_in_queue_.load(); }
  // Calls refused because the queue was full.
  int64_t overloaded() const { return overloaded_.load(); }

 private:
  grpc::Status Handle(grpc::CallbackServerContext* context,
                      const grpc::ByteBuffer& request, SteadyTime arrived,
                      SteadyTime deadline, grpc::ByteBuffer* response,
                      CallSummary* summary);
  void Finish(grpc::ServerUnaryReactor* reactor, const grpc::Status& status,
              SteadyTime arrived, CallSummary&& summary);

  const SnapshotManager* snapshots_;
  WorkerPool* workers_;
  const ServerOptions* options_;
  ServerMetrics* metrics_;
  AccessLog* access_log_;    // may be null
  RequestLog* request_log_;  // may be null
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> cancelled_in_queue_{0};
  std::atomic<int64_t> overloaded_{0};
};

class FeedServer;

// feedrank.v1.FeedAdmin (admin.proto), on the admin address.
class FeedAdminService final : public v1::FeedAdmin::Service {
 public:
  explicit FeedAdminService(FeedServer* server) : server_(server) {}
  grpc::Status ApplyConfig(grpc::ServerContext* context,
                           const v1::ApplyConfigRequest* request,
                           v1::ApplyConfigResponse* response) override;
  grpc::Status GetConfig(grpc::ServerContext* context,
                         const v1::GetConfigRequest* request,
                         v1::GetConfigResponse* response) override;
  grpc::Status UpsertVideos(grpc::ServerContext* context,
                            const v1::UpsertVideosRequest* request,
                            v1::UpdateResponse* response) override;
  grpc::Status DeleteVideos(grpc::ServerContext* context,
                            const v1::DeleteVideosRequest* request,
                            v1::UpdateResponse* response) override;
  grpc::Status UpsertUsers(grpc::ServerContext* context,
                           const v1::UpsertUsersRequest* request,
                           v1::UpdateResponse* response) override;
  grpc::Status RecordEvents(grpc::ServerContext* context,
                            const v1::RecordEventsRequest* request,
                            v1::UpdateResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context,
                         const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override;
  grpc::Status Compact(grpc::ServerContext* context, const v1::CompactRequest* request,
                       v1::CompactionInfo* response) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* context) const;
  FeedServer* server_;
};

class FeedServer {
 public:
  // Validates the options, binds `options.address` exclusively and starts
  // serving (not yet ready), with the monitoring endpoint and the access log
  // when configured. Errors: InvalidArgument for bad options; Unavailable
  // when an address cannot be bound (in use, or not local); ResourceExhausted
  // when the workers cannot start.
  static absl::StatusOr<std::unique_ptr<FeedServer>> Start(ServerOptions options);

  ~FeedServer();

  // Loads the bundle (bundle_dir, or the highest valid version under
  // bundle_root) with the config file, goes SERVING, and starts watching.
  // On error the previous snapshot (if any) keeps serving. A Shutdown()
  // during the load interrupts it (Cancelled).
  absl::Status Load();

  // Re-reads the config file, and loads a newer version from the bundle
  // root if there is one (SIGHUP). OK when nothing changed. Errors: the
  // refusal of what changed (the server keeps serving what it served).
  absl::Status Reload();

  // Drains and stops. Idempotent and thread-safe: every caller returns once
  // the server has stopped.
  void Shutdown();

  // Blocks until Shutdown() has completed.
  void Wait();

  // FeedAdmin.ApplyConfig and GetConfig (admin.proto), also for in-process
  // callers.
  grpc::Status ApplyConfig(const v1::ApplyConfigRequest& request,
                           v1::ApplyConfigResponse* response);
  grpc::Status GetConfig(v1::GetConfigResponse* response);
  // FeedAdmin's live updates (one batch: videos, deletes or users) and
  // GetStatus.
  grpc::Status ApplyLive(const v1::LiveUpdateRecord& batch, v1::UpdateResponse* response);
  grpc::Status GetStatus(v1::GetStatusResponse* response);

  // Folds the live delta into a new bundle version under bundle_root and
  // serves it (what the compaction thread does when one is due). Errors:
  // FailedPrecondition without live updates or bundle_root; those of the
  // build and the load (the previous state keeps serving).
  absl::Status Compact(v1::CompactionInfo* info = nullptr);

  int port() const { return port_; }
  // The admin service's port; 0 without one.
  int admin_port() const { return admin_port_; }
  // The monitoring endpoint's port; 0 without one.
  int metrics_port() const { return monitoring_ == nullptr ? 0 : monitoring_->port(); }
  SnapshotManager& snapshots() { return *snapshots_; }
  WorkerPool& workers() { return *workers_; }
  const FeedRankerService& service() const { return *service_; }
  const ServerMetrics& metrics() const { return *metrics_; }
  // The request log (closed once Shutdown has returned); null without one.
  const RequestLog* request_log() const { return request_log_.get(); }
  // The version directory served from bundle_root (-1 otherwise).
  int64_t served_version() const { return served_version_.load(); }

 private:
  friend class FeedAdminService;
  FeedServer() = default;

  // Versions in bundle_root, highest first.
  absl::StatusOr<std::vector<int64_t>> ListVersions() const;
  std::string VersionDir(int64_t version) const;
  // Loads the highest valid version above `above` not refused before in
  // its present state; OK with nothing to do. A version refused for an I/O
  // error (unreadable, disk busy: not its contents) is retried in its
  // present state too: at once when `forced` (Load, Reload, SIGHUP), else after a
  // backoff that doubles from the watch interval up to 5 minutes.
  absl::Status LoadNewerVersion(int64_t above, bool initial, bool forced = false);
  absl::Status CheckConfigFile(bool force);
  void Watch();
  // On the watcher: once a bundle swap has been seen a tick earlier, gives
  // the freed heap back to the system (malloc_trim).
  void ReleaseRetiredBundleMemory() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  void WatchGuardrails();
  void WatchCompaction();
  // After a load: the versions, bundles and objectives the metrics show.
  void PublishServing() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  void SetReady(bool ready);
  // Empty when ready, else why not (for /readyz).
  std::string NotReadyReason() const;

  ServerOptions options_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<RequestLog> request_log_;
  std::unique_ptr<SnapshotManager> snapshots_;
  std::unique_ptr<WorkerPool> workers_;  // outlives every call
  std::unique_ptr<FeedRankerService> service_;
  std::unique_ptr<ReflectionV1> reflection_v1_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<FeedAdminService> admin_service_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<GuardrailMonitor> guardrails_;
  std::unique_ptr<LiveUpdates> live_;  // null without live updates
  Mutex compact_mu_;                   // one compaction at a time
  std::atomic<bool> compacting_{false};
  std::unique_ptr<MonitoringServer> monitoring_;
  int port_ = 0;
  int admin_port_ = 0;
  // Set by Shutdown: interrupts a load in progress.
  std::atomic<bool> stop_loading_{false};
  std::atomic<int64_t> served_version_{-1};
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};

  // Serialises loads and reloads (the watcher's, Reload's, Load's) and holds
  // what they remember.
  Mutex reload_mu_;
  // Versions refused, with the manifest's state when they were: retried
  // when it changes, and (I/O errors) after `retry_at`.
  struct Refusal {
    FileInfo state;
    bool transient = false;
    SteadyTime retry_at;
    absl::Duration backoff;
  };
  std::map<int64_t, Refusal> refused_versions_ ABSL_GUARDED_BY(reload_mu_);
  std::optional<FileInfo> config_seen_ ABSL_GUARDED_BY(reload_mu_);
  const Bundle* watched_bundle_ ABSL_GUARDED_BY(reload_mu_) = nullptr;
  bool trim_due_ ABSL_GUARDED_BY(reload_mu_) = false;

  // The watcher thread and its wake-up.
  Mutex watch_mu_;
  CondVar watch_cv_;
  bool watch_stop_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watcher_;
  std::thread guardrail_watcher_;
  std::thread compaction_watcher_;

  // Orders the health flips of Load() and Shutdown().
  absl::Mutex state_mu_;
  bool shutting_down_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Notification stopped_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_FEED_SERVER_H_
