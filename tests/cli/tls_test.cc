// TLS and mutual TLS on a real `feedrank serve` process, with certificates
// made here by openssl: a CA, a server certificate for ranker.feed.internal
// and 127.0.0.1,
// a client certificate from the same CA, and one from a CA the server does
// not trust. The clients are the `feedrank` commands a user runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

// Runs openssl; fails the test on error.
void OpenSsl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string output;
  ASSERT_EQ(testing::RunProcess(argv, 60, &output), 0) << output;
}

// A CA (ca.pem, ca.key) in `dir`, named `name`.
void MakeCa(const testing::TempDir& dir, const std::string& name) {
  OpenSsl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
           "/CN=" + name, "-keyout", dir.Sub(name + ".key"), "-out",
           dir.Sub(name + ".pem")});
}

// A certificate `name`.pem / `name`.key signed by CA `ca`, for `san`.
void MakeCert(const testing::TempDir& dir, const std::string& ca, const std::string& name,
              const std::string& san) {
  OpenSsl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-keyout",
           dir.Sub(name + ".key"), "-out", dir.Sub(name + ".csr")});
  testing::WriteFile(dir.Sub(name + ".ext"), "subjectAltName=" + san + "\n");
  OpenSsl({"x509", "-req", "-in", dir.Sub(name + ".csr"), "-CA", dir.Sub(ca + ".pem"),
           "-CAkey", dir.Sub(ca + ".key"), "-CAcreateserial", "-days", "2", "-extfile",
           dir.Sub(name + ".ext"), "-out", dir.Sub(name + ".pem")});
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeCa(dir_, "ca");
    MakeCa(dir_, "rogue");
    MakeCert(dir_, "ca", "server", "DNS:ranker.feed.internal,IP:127.0.0.1");
    MakeCert(dir_, "ca", "client", "DNS:feed-admin");
    MakeCert(dir_, "rogue", "intruder", "DNS:feed-admin");
    testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir_.Sub("bundle"));
  }

  // Runs `feedrank args...`; returns its exit code, output in *out.
  int Feedrank(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {testing::FeedrankBinary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProcess(argv, 60, out);
  }

  testing::TempDir dir_;
};

TEST_F(TlsTest, BothServicesSpeakTlsAndTheAdminServiceRequiresATrustedClientCertificate) {
  const std::string log = dir_.Sub("log");
  const int pid = testing::StartProcess(
      {testing::FeedrankBinary(), "serve", "--bundle", dir_.Sub("bundle"), "--address",
       "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--tls-cert-file",
       dir_.Sub("server.pem"), "--tls-key-file", dir_.Sub("server.key"),
       "--tls-client-ca-file", dir_.Sub("ca.pem"), "--drain-grace", "0s"},
      log);
  const int port = testing::WaitForListeningPort(log, 20);
  ASSERT_GT(port, 0) << testing::ReadFile(log);
  const int admin_port = testing::WaitForListeningPort(log, 20, "admin on ");
  ASSERT_GT(admin_port, 0) << testing::ReadFile(log);
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("TLS"));
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("mutual TLS"));
  const std::string target = absl::StrCat("127.0.0.1:", port);
  const std::string admin = absl::StrCat("127.0.0.1:", admin_port);
  std::string out;

  // RankFeed over TLS, verifying the server against the CA.
  EXPECT_EQ(Feedrank({"query", "--target", target, "--tls-ca-file", dir_.Sub("ca.pem"),
                      "--user", "1", "--wait", "20s"},
                     &out),
            0)
      << out;
  // ... and by the name in its certificate, as a client that dials an
  // address (a load balancer, a sidecar) under another name would. No name
  // resolution is involved: the test must not depend on the host's resolver.
  EXPECT_EQ(Feedrank({"query", "--target", target, "--tls-ca-file", dir_.Sub("ca.pem"),
                      "--tls-server-name", "ranker.feed.internal", "--user", "1",
                      "--wait", "20s"},
                     &out),
            0)
      << out;
  // A name the certificate does not carry: refused.
  EXPECT_NE(Feedrank({"query", "--target", target, "--tls-ca-file", dir_.Sub("ca.pem"),
                      "--tls-server-name", "other.feed.internal", "--user", "1", "--wait",
                      "1s"},
                     &out),
            0);
  EXPECT_THAT(out, HasSubstr("not SERVING after 1s"));
  // Plaintext to a TLS port: no answer.
  EXPECT_NE(Feedrank({"query", "--target", target, "--user", "1", "--wait", "1s"}, &out),
            0);
  EXPECT_THAT(out, HasSubstr("not SERVING after 1s"));
  // A client that trusts another CA refuses the server.
  EXPECT_NE(Feedrank({"query", "--target", target, "--tls-ca-file", dir_.Sub("rogue.pem"),
                      "--user", "1", "--wait", "1s"},
                     &out),
            0);
  EXPECT_THAT(out, HasSubstr("certificate verify failed"));

  // The admin service: with the trusted client certificate, yes.
  EXPECT_EQ(Feedrank({"admin", "status", "--target", admin, "--tls-ca-file",
                      dir_.Sub("ca.pem"), "--tls-cert-file", dir_.Sub("client.pem"),
                      "--tls-key-file", dir_.Sub("client.key")},
                     &out),
            0)
      << out;
  // Without a client certificate, or with one from an untrusted CA: no.
  EXPECT_NE(Feedrank({"admin", "status", "--target", admin, "--tls-ca-file",
                      dir_.Sub("ca.pem")},
                     &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("UNAVAILABLE"));
  EXPECT_NE(Feedrank({"admin", "status", "--target", admin, "--tls-ca-file",
                      dir_.Sub("ca.pem"), "--tls-cert-file", dir_.Sub("intruder.pem"),
                      "--tls-key-file", dir_.Sub("intruder.key")},
                     &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("UNAVAILABLE"));
  // Plaintext: no.
  EXPECT_NE(Feedrank({"admin", "status", "--target", admin}, &out), 0);
  EXPECT_THAT(out, HasSubstr("UNAVAILABLE"));

  EXPECT_EQ(testing::StopProcess(pid), 0) << testing::ReadFile(log);
}

TEST_F(TlsTest, BadTlsFlagsAreRefusedAtStartNamingTheFlag) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert-file", dir_.Sub("server.pem")}, "--tls-cert-file and --tls-key-file"},
      {{"--tls-client-ca-file", dir_.Sub("ca.pem")}, "--tls-client-ca-file needs"},
      {{"--tls-cert-file", dir_.Sub("missing.pem"), "--tls-key-file",
        dir_.Sub("server.key")},
       "--tls-cert-file"},
      // A key where the certificate goes.
      {{"--tls-cert-file", dir_.Sub("server.key"), "--tls-key-file",
        dir_.Sub("server.key")},
       "holds no PEM CERTIFICATE"},
      {{"--tls-cert-file", dir_.Sub("server.pem"), "--tls-key-file",
        dir_.Sub("server.pem")},
       "holds no PEM PRIVATE KEY"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"serve",      "--bundle",    dir_.Sub("bundle"),
                                     "--address",  "127.0.0.1:0", "--admin-address",
                                     "127.0.0.1:0"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    std::string out;
    EXPECT_NE(Feedrank(args, &out), 0) << c.message;
    EXPECT_THAT(out, HasSubstr(c.message));
  }
  // A client certificate without its key, on the client side.
  std::string out;
  EXPECT_NE(Feedrank({"admin", "status", "--tls-ca-file", dir_.Sub("ca.pem"),
                      "--tls-cert-file", dir_.Sub("client.pem")},
                     &out),
            0);
  EXPECT_THAT(out, HasSubstr("--tls-cert-file and --tls-key-file go together"));
}

TEST_F(TlsTest, PlaintextOnAnAddressOtherThanLoopbackIsServedOnlyWhenAskedFor) {
  std::string out;
  // No certificate, a wildcard address, no --plaintext: refused, saying what
  // to give.
  EXPECT_NE(
      Feedrank({"serve", "--bundle", dir_.Sub("bundle"), "--address", "0.0.0.0:0"}, &out),
      0);
  EXPECT_THAT(out,
              HasSubstr("0.0.0.0:0 is not a loopback address and no TLS certificate"));
  EXPECT_THAT(out, HasSubstr("--plaintext"));
  // --plaintext with a certificate: a contradiction.
  EXPECT_NE(Feedrank({"serve", "--bundle", dir_.Sub("bundle"), "--address", "0.0.0.0:0",
                      "--plaintext", "--tls-cert-file", dir_.Sub("server.pem"),
                      "--tls-key-file", dir_.Sub("server.key")},
                     &out),
            0);
  EXPECT_THAT(out, HasSubstr("contradict"));

  // Asked for: it serves, and says so.
  const std::string log = dir_.Sub("plain.log");
  const int pid = testing::StartProcess(
      {testing::FeedrankBinary(), "serve", "--bundle", dir_.Sub("bundle"), "--address",
       "0.0.0.0:0", "--plaintext", "--drain-grace", "0s"},
      log);
  const int port = testing::WaitForListeningPort(log, 20);
  ASSERT_GT(port, 0) << testing::ReadFile(log);
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("plaintext"));
  EXPECT_EQ(Feedrank({"query", "--target", absl::StrCat("127.0.0.1:", port), "--user",
                      "1", "--wait", "20s"},
                     &out),
            0)
      << out;
  EXPECT_EQ(testing::StopProcess(pid), 0) << testing::ReadFile(log);
}

}  // namespace
}  // namespace feedrank
