// Client-side helpers shared by `feedrank query`, `feedrank loadgen` and the
// tests: blocking unary calls through grpc::GenericStub with any protobuf
// messages (so the standard health service needs no generated stub), and
// waiting for a server to report SERVING.
#ifndef FEEDRANK_CLI_CLIENT_H_
#define FEEDRANK_CLI_CLIENT_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <future>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "feedrank/v1/ranker.pb.h"

namespace feedrank {

// Calls the unary method `method` ("/package.Service/Method") and blocks for
// the answer.
template <typename Request, typename Response>
grpc::Status CallUnary(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& method, const Request& request,
                       Response* response, absl::Duration timeout) {
  grpc::TemplatedGenericStub<Request, Response> stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(timeout));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

// One grpc.health.v1.Health/Check of `service` ("" = the whole server).
// Returns the serving status name ("SERVING", "NOT_SERVING", ...) or the
// call's error.
absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service);

// Polls health until `service` is SERVING. Errors: DeadlineExceeded after
// `timeout`, with the last status seen.
absl::Status WaitForServing(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& service, absl::Duration timeout);

// How a command-line client reaches a server: plaintext unless `ca_file`
// is set; then TLS verifying the server against it, presenting `cert_file`
// and `key_file` when given (for an admin service with mutual TLS), and
// checking the server's certificate for `server_name` when set (else the
// target's host).
struct ClientTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;
};

// A channel to `target` with `tls` and `args`. Errors name the flag and
// file: a file that cannot be read or holds no PEM block, a client
// certificate without its key.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const std::string& target, const ClientTls& tls,
    grpc::ChannelArguments args = grpc::ChannelArguments());

// "INVALID_ARGUMENT" etc.
std::string CodeName(grpc::StatusCode code);

// A ranked page as an aligned text table.
std::string FormatFeed(const v1::RankFeedRequest& request,
                       const v1::RankFeedResponse& response);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_CLIENT_H_
