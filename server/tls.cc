#include "server/tls.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {

absl::Status ValidateServerTls(const ServerTls& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file go together: give both or neither");
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca-file needs --tls-cert-file and --tls-key-file (mutual TLS is "
        "TLS)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTls& tls, bool mutual, FileSystem& fs) {
  RETURN_IF_ERROR(ValidateServerTls(tls));
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain,
                   ReadPemFile(fs, tls.cert_file, "CERTIFICATE", "--tls-cert-file"));
  ASSIGN_OR_RETURN(pair.private_key,
                   ReadPemFile(fs, tls.key_file, "PRIVATE KEY", "--tls-key-file"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (mutual && !tls.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(
        options.pem_root_certs,
        ReadPemFile(fs, tls.client_ca_file, "CERTIFICATE", "--tls-client-ca-file"));
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace feedrank
