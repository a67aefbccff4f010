#include "server/monitoring.h"

// <resolv.h> (through httplib) defines a `_res` macro; nothing here uses Eigen.
#include <httplib.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace feedrank {

absl::Status ParseHostPort(const std::string& address, std::string* host, int* port) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address '", address, "': ", why, " (expected host:port, e.g. 0.0.0.0:50051)"));
  };
  size_t colon;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos) return bad("unclosed [");
    *host = address.substr(1, close - 1);
    colon = close + 1;
    if (colon >= address.size() || address[colon] != ':') return bad("no port");
  } else {
    colon = address.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    *host = address.substr(0, colon);
    if (host->find(':') != std::string::npos) return bad("an IPv6 host needs [brackets]");
  }
  if (host->empty()) return bad("no host");
  const std::string port_text = address.substr(colon + 1);
  int value;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &value) || value < 0 ||
      value > 65535 || port_text.find_first_not_of("0123456789") != std::string::npos) {
    return bad(absl::StrCat("port '", port_text, "' is not a number in [0, 65535]"));
  }
  *port = value;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MonitoringServer>> MonitoringServer::Start(
    const std::string& address, Collect collect, NotReadyReason not_ready) {
  std::string host;
  int port;
  if (absl::Status parsed = ParseHostPort(address, &host, &port); !parsed.ok())
    return parsed;
  std::unique_ptr<MonitoringServer> server(new MonitoringServer());
  server->http_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->http_;
  http.Get("/metrics", [collect](const httplib::Request&, httplib::Response& res) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, collect());
    res.set_content(out.str(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [not_ready](const httplib::Request&, httplib::Response& res) {
    const std::string reason = not_ready();
    if (reason.empty()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(reason + "\n", "text/plain");
    }
  });
  // Exclusive: a second server on the same address must fail, not share it.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (port == 0) {
    server->port_ = http.bind_to_any_port(host);
    if (server->port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("metrics address ", address, ": cannot bind"));
    }
  } else {
    if (!http.bind_to_port(host, port)) {
      return absl::UnavailableError(absl::StrCat(
          "metrics address ", address, ": cannot bind (in use, or not a local address)"));
    }
    server->port_ = port;
  }
  server->thread_ = std::thread([&http] { http.listen_after_bind(); });
  // Running before Start returns, so that a stop cannot race the start.
  while (!http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return server;
}

MonitoringServer::~MonitoringServer() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace feedrank
