// FeedAdmin and the experiment machinery on a real server: configs applied
// (and refused) over the admin RPC, arms on a second bundle, per-arm
// metrics scraped over HTTP, and a guardrail tripped by an arm made slow on
// purpose.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
#include "tests/server/scrape.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using testing::Get;
using ::testing::HasSubstr;
using testing::ParsePrometheus;
using testing::Sample;
using testing::Value;

constexpr char kConfigV1[] = "version: \"v1\"\nparams { max_count: 50 }\n";

// A 50/50 experiment on the "rank" layer; `arm_b` is the text of arm b's
// fields (overrides, bundle, guardrail).
std::string Experiment(const std::string& version, const std::string& arm_b,
                       const std::string& extra = "") {
  return absl::StrCat("version: \"", version, "\"\n", extra, R"cfg(
layers {
  name: "rank"
  salt: "rank-salt"
  experiments {
    name: "exp"
    ranges { begin: 0 end: 10000 }
    arms { name: "a" ranges { begin: 0 end: 5000 } }
    arms { name: "b" ranges { begin: 5000 end: 10000 } )cfg",
                      arm_b, R"cfg( }
  }
}
)cfg");
}

class AdminTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    SynthOptions a = testing::SmallSynth(3000, 200);
    a.version = "bundle-a";
    testing::WriteSmallBundle(a, dir_->Sub("a"));
    SynthOptions b = testing::SmallSynth(2500, 200);
    b.seed = 31;
    b.version = "bundle-b";
    testing::WriteSmallBundle(b, dir_->Sub("b"));
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    config_dir_ = std::make_unique<testing::TempDir>();
    config_path_ = config_dir_->Sub("config.textproto");
    testing::WriteFile(config_path_, kConfigV1);
  }

  void Start(const std::function<void(ServerOptions*)>& tweak = nullptr) {
    ServerOptions o;
    o.address = "127.0.0.1:0";
    o.metrics_address = "127.0.0.1:0";
    o.admin_address = "127.0.0.1:0";
    o.bundle_dir = dir_->Sub("a");
    o.config_path = config_path_;
    o.watch_interval = absl::ZeroDuration();
    if (tweak) tweak(&o);
    auto server = FeedServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->Load().ok());
    stub_ = v1::FeedRanker::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
    admin_ = v1::FeedAdmin::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->admin_port()),
                            grpc::InsecureChannelCredentials()));
  }

  grpc::Status Apply(const std::string& text, bool dry_run,
                     v1::ApplyConfigResponse* response = nullptr,
                     const std::string& expected_version = "",
                     const std::string& token = "") {
    v1::ApplyConfigRequest request;
    request.set_config_text(text);
    request.set_dry_run(dry_run);
    request.set_expected_version(expected_version);
    v1::ApplyConfigResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    return admin_->ApplyConfig(&context, request, response ? response : &ignored);
  }

  v1::GetConfigResponse GetConfig() {
    v1::GetConfigResponse response;
    grpc::ClientContext context;
    grpc::Status status = admin_->GetConfig(&context, v1::GetConfigRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  v1::RankFeedResponse Rank(uint64_t user, grpc::Status* status_out = nullptr) {
    v1::RankFeedRequest request;
    request.set_user_id(user);
    request.set_count(10);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status status = stub_->RankFeed(&context, request, &response);
    if (status_out != nullptr) {
      *status_out = status;
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    return response;
  }

  uint64_t User(int row) const {
    return server_->snapshots().Current()->bundle->catalog->user_id(row);
  }

  std::vector<Sample> Scrape() {
    auto res = Get(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(res) << "scrape failed";
    return res ? ParsePrometheus(res->body) : std::vector<Sample>();
  }

  static testing::TempDir* dir_;
  std::unique_ptr<testing::TempDir> config_dir_;
  std::string config_path_;
  std::unique_ptr<FeedServer> server_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
  std::unique_ptr<v1::FeedAdmin::Stub> admin_;
};
testing::TempDir* AdminTest::dir_ = nullptr;

TEST_F(AdminTest, DryRunReportsSharesAndApplyServesAndWritesTheFileBack) {
  Start();
  const std::string text = Experiment("v2", "overrides { creator_cap: 1 }");
  v1::ApplyConfigResponse dry;
  grpc::Status status = Apply(text, /*dry_run=*/true, &dry);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(dry.applied());
  EXPECT_EQ(dry.config_version(), "v2");
  EXPECT_EQ(dry.previous_version(), "v1");
  ASSERT_EQ(dry.shares_size(), 3);  // a, b, and the layer's free buckets
  EXPECT_EQ(dry.shares(0).arm(), "a");
  EXPECT_EQ(dry.shares(0).buckets(), 5000u);
  EXPECT_DOUBLE_EQ(dry.shares(1).share(), 0.5);
  EXPECT_EQ(dry.shares(2).buckets(), 0u);
  // A dry run serves and writes nothing.
  EXPECT_EQ(Rank(User(0)).config_version(), "v1");
  EXPECT_EQ(testing::ReadFile(config_path_), kConfigV1);

  v1::ApplyConfigResponse applied;
  status = Apply(text, /*dry_run=*/false, &applied);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(applied.applied());
  // The very next call ranks with it, and reports its arm.
  const v1::RankFeedResponse next = Rank(User(0));
  EXPECT_EQ(next.config_version(), "v2");
  ASSERT_EQ(next.arms_size(), 1);
  EXPECT_EQ(next.arms(0).layer(), "rank");
  // The file is the source of truth: it holds the applied text, and a
  // reload (SIGHUP) keeps serving it.
  EXPECT_EQ(testing::ReadFile(config_path_), text);
  ASSERT_TRUE(server_->Reload().ok());
  EXPECT_EQ(Rank(User(1)).config_version(), "v2");
  const v1::GetConfigResponse got = GetConfig();
  EXPECT_EQ(got.config_version(), "v2");
  EXPECT_EQ(got.source(), "file");
  EXPECT_EQ(got.config_path(), config_path_);
  EXPECT_THAT(got.config_text(), HasSubstr("rank-salt"));
  EXPECT_EQ(got.shares_size(), 3);
  EXPECT_GT(got.resident_bytes(), 0);

  // Optimistic concurrency: a stale expected version is refused.
  status = Apply(Experiment("v3", ""), false, nullptr, /*expected_version=*/"v1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("'v2' is served"));
  status = Apply(Experiment("v3", ""), false, nullptr, /*expected_version=*/"v2");
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Rank(User(0)).config_version(), "v3");
}

TEST_F(AdminTest, EachKindOfInvalidConfigIsRefusedWithItsReasonAndCounted) {
  Start();
  // A symbolic link under the bundle base to a valid bundle outside it: the
  // name is inside lexically, the files are not.
  testing::TempDir outside;
  SynthOptions elsewhere = testing::SmallSynth(2500, 200);
  elsewhere.seed = 31;
  testing::WriteSmallBundle(elsewhere, outside.Sub("bundle"));
  std::error_code ignored;
  std::filesystem::remove(dir_->Sub("escape"), ignored);
  std::filesystem::create_directory_symlink(outside.Sub("bundle"), dir_->Sub("escape"));
  struct Case {
    const char* name;
    std::string text;
    const char* reason;   // the metric's label
    const char* message;  // in the RPC status
  };
  const std::string two_layers = R"cfg(
version: "bad"
layers { name: "one" salt: "s1" experiments { name: "e" ranges { begin: 0 end: 10 }
  arms { name: "x" ranges { begin: 0 end: 10 } overrides { creator_cap: 1 } } } }
layers { name: "two" salt: "s2" experiments { name: "f" ranges { begin: 0 end: 10 }
  arms { name: "y" ranges { begin: 0 end: 10 } overrides { creator_cap: 3 } } } }
)cfg";
  const std::vector<Case> cases = {
      {"unknown field", "version: \"bad\" params { no_such_field: 1 }", "parse",
       "no_such_field"},
      {"overlapping ranges", R"cfg(
version: "bad"
layers { name: "l" salt: "s"
  experiments { name: "e1" ranges { begin: 0 end: 6000 } arms { name: "a" ranges { begin: 0 end: 6000 } } }
  experiments { name: "e2" ranges { begin: 5000 end: 7000 } arms { name: "b" ranges { begin: 5000 end: 7000 } } } }
)cfg",
       "overlap", "overlaps"},
      {"layer without a salt",
       "version: \"bad\" layers { name: \"l\" experiments { name: \"e\" ranges { begin: "
       "0 "
       "end: 10 } arms { name: \"a\" ranges { begin: 0 end: 10 } } } }",
       "salt", "salt is empty"},
      {"two layers override one field", two_layers, "field_conflict",
       "a field belongs to one layer"},
      {"unknown objective",
       Experiment("bad", "overrides { objective_weights { key: \"nope\" value: 1 } }"),
       "unknown_objective", "'nope' is not an objective"},
      {"unknown bundle", Experiment("bad", "bundle: \"v9\""), "unknown_bundle",
       "'v9' is not among bundles"},
      {"out-of-range value", Experiment("bad", "overrides { max_count: 5000 }"),
       "out_of_range", "max_count: 5000 is outside"},
      {"bundle outside the bundle base",
       Experiment("bad", "bundle: \"x\"", "bundles { name: \"x\" dir: \"/etc\" }\n"),
       "bundle", "outside the bundle base"},
      {"bundle through a symbolic link out of the bundle base",
       Experiment("bad", "bundle: \"x\"", "bundles { name: \"x\" dir: \"escape\" }\n"),
       "bundle", "is (or is under) a symbolic link to"},
      {"guardrail without a limit", Experiment("bad", "guardrail { window_seconds: 5 }"),
       "guardrail", "sets no limit"},
  };
  std::map<std::string, int> refusals;  // expected, by reason
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ++refusals[c.reason];
    const grpc::Status status = Apply(c.text, /*dry_run=*/false);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    // Nothing changed: the old config keeps serving, the file is as it was.
    EXPECT_EQ(Rank(User(2)).config_version(), "v1");
    EXPECT_EQ(testing::ReadFile(config_path_), kConfigV1);
    EXPECT_EQ(Value(Scrape(), "feedrank_config_refusals_total",
                    {{"source", "admin"}, {"reason", c.reason}}),
              refusals[c.reason])
        << c.reason;
    // The same config in a dry run is refused with the same reason.
    EXPECT_THAT(Apply(c.text, /*dry_run=*/true).error_message(), HasSubstr(c.message));
  }
  // A refused config file counts under source="file".
  testing::WriteFile(config_path_, Experiment("bad", "overrides { max_count: 5000 }"));
  EXPECT_FALSE(server_->Reload().ok());
  EXPECT_EQ(Value(Scrape(), "feedrank_config_refusals_total",
                  {{"source", "file"}, {"reason", "out_of_range"}}),
            1);
  EXPECT_EQ(Rank(User(2)).config_version(), "v1");
}

TEST_F(AdminTest, BeforeABundleIsLoadedApplyAndGetAreFailedPrecondition) {
  ServerOptions o;
  o.address = "127.0.0.1:0";
  o.admin_address = "127.0.0.1:0";
  o.bundle_dir = dir_->Sub("a");
  auto server = FeedServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  admin_ = v1::FeedAdmin::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->admin_port()),
                          grpc::InsecureChannelCredentials()));
  const grpc::Status status = Apply(Experiment("v2", ""), /*dry_run=*/true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("no bundle loaded yet"));
  v1::GetConfigResponse response;
  grpc::ClientContext context;
  EXPECT_EQ(admin_->GetConfig(&context, v1::GetConfigRequest(), &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(AdminTest, AnInjectedDelayNeverHoldsAThreadPastTheCallsDeadline) {
  Start([](ServerOptions* o) { o->workers = 1; });
  ASSERT_TRUE(Apply("version: \"slow\" params { inject_delay_ms: 10000 }", false).ok());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) {  // the second waits for the one thread
    v1::RankFeedRequest request;
    request.set_user_id(User(i));
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(300));
    EXPECT_EQ(stub_->RankFeed(&context, request, &response).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  // Then the thread is free again: a call with time to spare is answered
  // after at most its own delay, not the 10 s of the ones before.
  ASSERT_TRUE(Apply("version: \"fast\"", false).ok());
  Rank(User(2));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(AdminTest, AConfigFileThatCannotBeWrittenRefusesTheApply) {
  Start();
  std::filesystem::remove_all(config_dir_->Sub(""));
  const grpc::Status status = Apply(Experiment("v2", ""), /*dry_run=*/false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("cannot be written"));
  EXPECT_EQ(Rank(User(0)).config_version(), "v1");
}

TEST_F(AdminTest, ATokenIsRequiredWhenSetAndAnExposedAdminNeedsOne) {
  Start([](ServerOptions* o) { o->admin_token = "s3cret"; });
  grpc::Status status = Apply(Experiment("v2", ""), true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Apply(Experiment("v2", ""), true, nullptr, "", "wrong");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Apply(Experiment("v2", ""), true, nullptr, "", "s3cret");
  EXPECT_TRUE(status.ok()) << status.error_message();

  ServerOptions exposed;
  exposed.bundle_dir = dir_->Sub("a");
  exposed.admin_address = "0.0.0.0:0";
  absl::Status valid = ValidateServerOptions(exposed);
  EXPECT_EQ(valid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(valid.message()), HasSubstr("needs a token"));
  exposed.admin_token = "t";
  EXPECT_TRUE(ValidateServerOptions(exposed).ok());
}

TEST_F(AdminTest, AnArmOnASecondBundleRanksWithThatBundleAndBothAreReported) {
  Start();
  // "b" is relative: beside the served bundle (the bundle base).
  const std::string text = Experiment("two-bundles", "bundle: \"v2\"",
                                      "bundles { name: \"v2\" dir: \"b\" }\n");
  grpc::Status status = Apply(text, /*dry_run=*/false);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const auto snapshot = server_->snapshots().Current();
  ASSERT_EQ(snapshot->extra_bundles.size(), 1u);
  const Catalog& catalog_a = *snapshot->bundle->catalog;
  const Catalog& catalog_b = *snapshot->extra_bundles[0].second->catalog;
  std::set<uint64_t> ids_a, ids_b;
  for (int64_t r = 0; r < catalog_a.num_videos(); ++r)
    ids_a.insert(catalog_a.video_id(r));
  for (int64_t r = 0; r < catalog_b.num_videos(); ++r)
    ids_b.insert(catalog_b.video_id(r));
  int in_a = 0, in_b = 0;
  for (int row = 0; row < 120; ++row) {
    const v1::RankFeedResponse r = Rank(User(row));
    ASSERT_EQ(r.arms_size(), 1);
    const bool second = r.arms(0).arm() == "b";
    EXPECT_EQ(r.bundle_version(), second ? "bundle-b" : "bundle-a");
    for (const v1::RankedItem& item : r.items()) {
      EXPECT_TRUE((second ? ids_b : ids_a).count(item.video_id())) << item.video_id();
    }
    (second ? in_b : in_a) += 1;
  }
  EXPECT_GT(in_a, 30);
  EXPECT_GT(in_b, 30);
  // Memory for both: in GetConfig and in /metrics.
  const v1::GetConfigResponse got = GetConfig();
  ASSERT_EQ(got.bundles_size(), 2);
  EXPECT_EQ(got.bundles(1).name(), "v2");
  EXPECT_EQ(got.bundles(1).version(), "bundle-b");
  EXPECT_GT(got.bundles(1).file_bytes(), 10000);
  const auto samples = Scrape();
  EXPECT_EQ(Value(samples, "feedrank_bundle_file_bytes", {{"bundle", "default"}}),
            double(got.bundles(0).file_bytes()));
  EXPECT_EQ(Value(samples, "feedrank_bundle_file_bytes",
                  {{"bundle", "v2"}, {"version", "bundle-b"}}),
            double(got.bundles(1).file_bytes()));
  EXPECT_GT(Value(samples, "process_resident_memory_bytes"), 1e6);
  // A bundle swap of the default keeps the second one beside it.
  ASSERT_TRUE(server_->snapshots().SwapBundle(dir_->Sub("a")).ok());
  EXPECT_EQ(server_->snapshots().Current()->extra_bundles.size(), 1u);
  EXPECT_EQ(server_->snapshots().Current()->extra_bundles[0].second,
            snapshot->extra_bundles[0].second);  // reused, not reloaded
}

TEST_F(AdminTest, PerArmMetricsCountUnpinnedCallsAndPredictedValues) {
  Start();
  ASSERT_TRUE(
      Apply(Experiment("arms", "overrides { creator_cap: 1 }", "allow_pinning: true\n"),
            false)
          .ok());
  std::map<std::string, int> calls;
  for (int row = 0; row < 100; ++row) {
    const v1::RankFeedResponse r = Rank(User(row));
    ASSERT_EQ(r.arms_size(), 1);
    ++calls[r.arms(0).arm()];
  }
  // Pinned calls are excluded.
  for (int i = 0; i < 7; ++i) {
    v1::RankFeedRequest request;
    request.set_user_id(User(i));
    v1::ArmPin* pin = request.add_pin_arms();
    pin->set_layer("rank");
    pin->set_arm("b");
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->RankFeed(&context, request, &response).ok());
    EXPECT_TRUE(response.pinned());
  }
  const auto samples = Scrape();
  for (const char* arm : {"a", "b"}) {
    SCOPED_TRACE(arm);
    const std::map<std::string, std::string> labels = {
        {"layer", "rank"}, {"experiment", "exp"}, {"arm", arm}};
    EXPECT_EQ(Value(samples, "feedrank_arm_requests_total", labels), calls[arm]);
    EXPECT_EQ(Value(samples, "feedrank_arm_errors_total", labels), 0);
    EXPECT_EQ(Value(samples, "feedrank_arm_request_duration_seconds_count", labels),
              calls[arm]);
    EXPECT_EQ(Value(samples, "feedrank_arm_predicted_value_count", labels), calls[arm]);
    auto with_objective = labels;
    with_objective["objective"] =
        server_->snapshots().Current()->bundle->model->objectives()[0];
    const double sum = Value(samples, "feedrank_arm_predicted_value_sum", with_objective);
    EXPECT_GT(sum, 0);
    EXPECT_LE(sum, calls[arm]);  // a mean probability per call
  }
}

TEST_F(AdminTest, AGuardrailMovesTheUsersOfAnArmMadeSlowBackToControl) {
  Start([](ServerOptions* o) { o->guardrail_interval = absl::Milliseconds(100); });
  // Arm b waits 200 ms per call on purpose; its p99 limit is 100 ms.
  const std::string slow =
      Experiment("guarded",
                 "overrides { inject_delay_ms: 200 } "
                 "guardrail { max_p99_ms: 100 window_seconds: 5 min_calls: 5 }");
  ASSERT_TRUE(Apply(slow, false).ok());
  std::vector<uint64_t> b_users;
  for (int row = 0; row < 200 && b_users.size() < 4; ++row) {
    const v1::RankFeedResponse r = Rank(User(row));
    if (r.arms(0).arm() == "b") b_users.push_back(User(row));
  }
  ASSERT_EQ(b_users.size(), 4u);
  // Callers keep calling arm b's users until the guardrail moves them.
  bool reverted = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!reverted && std::chrono::steady_clock::now() < until) {
    for (uint64_t user : b_users) {
      const v1::RankFeedResponse r = Rank(user);
      ASSERT_EQ(r.arms(0).arm(), "b");  // still reported as their own arm
      if (r.arms(0).reverted_to() == "a") reverted = true;
    }
  }
  ASSERT_TRUE(reverted) << "the guardrail did not trip within 30 s";
  // Now served as control: fast, and every answer says so.
  for (uint64_t user : b_users) {
    const auto start = std::chrono::steady_clock::now();
    const v1::RankFeedResponse r = Rank(user);
    EXPECT_EQ(r.arms(0).reverted_to(), "a");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  }
  const v1::GetConfigResponse got = GetConfig();
  ASSERT_EQ(got.reverted_size(), 1);
  EXPECT_EQ(got.reverted(0).arm(), "b");
  EXPECT_EQ(got.reverted(0).reverted_to(), "a");
  EXPECT_THAT(got.reverted(0).reason(), HasSubstr("p99 latency"));
  const auto samples = Scrape();
  const std::map<std::string, std::string> b = {
      {"layer", "rank"}, {"experiment", "exp"}, {"arm", "b"}};
  auto with_limit = b;
  with_limit["limit"] = "p99";
  EXPECT_EQ(Value(samples, "feedrank_guardrail_trips_total", with_limit), 1);
  auto reverted_labels = b;
  reverted_labels["reverted_to"] = "a";
  EXPECT_EQ(Value(samples, "feedrank_arm_reverted", reverted_labels), 1);
  // A config that leaves arm b as it was keeps the revert; one that changes
  // the arm clears it.
  ASSERT_TRUE(Apply(absl::StrCat(slow, "params { creator_cap: 3 }\n"), false).ok());
  EXPECT_EQ(Rank(b_users[0]).arms(0).reverted_to(), "a");
  ASSERT_TRUE(Apply(Experiment("fixed", "overrides { creator_cap: 1 }"), false).ok());
  EXPECT_EQ(Rank(b_users[0]).arms(0).reverted_to(), "");
  EXPECT_EQ(GetConfig().reverted_size(), 0);
}

}  // namespace
}  // namespace feedrank
