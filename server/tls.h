// TLS for the gRPC services (docs/OPERATIONS.md, "TLS"): the server side's
// credentials from PEM files. Without a certificate a service is plaintext.
#ifndef FEEDRANK_SERVER_TLS_H_
#define FEEDRANK_SERVER_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/env.h"

namespace feedrank {

struct ServerTls {
  // PEM certificate chain and private key; both or neither (plaintext).
  std::string cert_file;
  std::string key_file;
  // PEM CA certificates. When set, the admin service requires a client
  // certificate signed by one of them (mutual TLS); the ranking service
  // does not ask for one.
  std::string client_ca_file;

  bool enabled() const { return !cert_file.empty(); }
};

// Checks `tls` (both files or neither; a client CA only with them).
// InvalidArgument naming the flag.
absl::Status ValidateServerTls(const ServerTls& tls);

// The credentials of a service: insecure when `tls` has no certificate;
// else TLS with its certificate, requiring and verifying client
// certificates against client_ca_file when `mutual` and that is set.
// Errors name the file: those of reading it (NotFound, ...), and
// InvalidArgument when it holds no PEM certificate / private key.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTls& tls, bool mutual, FileSystem& fs = *FileSystem::Real());

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_TLS_H_
