#include "server/tls.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

// A PEM file's text, checked to hold a block of `kind` ("CERTIFICATE",
// "PRIVATE KEY": matches "RSA PRIVATE KEY", "EC PRIVATE KEY" too).
absl::StatusOr<std::string> ReadPem(FileSystem& fs, const std::string& path,
                                    const char* kind, const char* flag) {
  auto text = ReadFileToString(fs, path, 1 << 20);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(flag, ": ", text.status().message()));
  }
  if (!absl::StrContains(*text, "-----BEGIN ") ||
      !absl::StrContains(*text, absl::StrCat(kind, "-----"))) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM ", kind));
  }
  return text;
}

}  // namespace

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
                   ReadPem(fs, tls.cert_file, "CERTIFICATE", "--tls-cert-file"));
  ASSIGN_OR_RETURN(pair.private_key,
                   ReadPem(fs, tls.key_file, "PRIVATE KEY", "--tls-key-file"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (mutual && !tls.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(
        options.pem_root_certs,
        ReadPem(fs, tls.client_ca_file, "CERTIFICATE", "--tls-client-ca-file"));
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace feedrank
