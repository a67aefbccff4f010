// MonitoringServer: the HTTP endpoint operators and load balancers read,
// on an address of its own (--metrics-address), apart from the gRPC port:
//
//   GET /metrics   Prometheus text exposition (format 0.0.4)
//   GET /healthz   200 "ok" while the process runs (liveness)
//   GET /readyz    200 "ready" when a bundle is served and the server is not
//                  draining, else 503 with the reason (readiness)
//
// HTTP by cpp-httplib, exposition by prometheus-cpp's TextSerializer.
//
// Thread-safety: thread-safe; the callbacks run on the HTTP server's
// threads, concurrently with requests.
#ifndef FEEDRANK_SERVER_MONITORING_H_
#define FEEDRANK_SERVER_MONITORING_H_

#include <prometheus/metric_family.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace feedrank {

class MonitoringServer {
 public:
  // Metric families to expose, gathered at each scrape.
  using Collect = std::function<std::vector<prometheus::MetricFamily>()>;
  // Empty when ready, else why not.
  using NotReadyReason = std::function<std::string()>;

  // Binds `address` (host:port; port 0 picks one) and serves on a thread of
  // its own. Errors: InvalidArgument for a malformed address; Unavailable
  // when it cannot be bound (e.g. in use), naming it.
  static absl::StatusOr<std::unique_ptr<MonitoringServer>> Start(
      const std::string& address, Collect collect, NotReadyReason not_ready);
  // Stops serving and joins the thread.
  ~MonitoringServer();

  int port() const { return port_; }

 private:
  MonitoringServer() = default;

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "host:port" (IPv6 as "[::1]:port"). The port must be given, in
// [0, 65535]; the host must not be empty. Errors: InvalidArgument saying
// what is wrong with `address`.
absl::Status ParseHostPort(const std::string& address, std::string* host, int* port);

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_MONITORING_H_
