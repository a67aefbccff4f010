#include "training/trainer.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/client.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "replay/replay_log.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

const std::string kDataDir = std::string(FEEDRANK_SOURCE_DIR) + "/data/kuairand-likehate";

// The shipped log cut to its first `users` users (all their rows).
std::string WriteSlice(const testing::TempDir& dir, int users) {
  std::ifstream in(kDataDir + "/interactions.tsv");
  std::ofstream out(dir.Sub("slice.tsv"));
  std::string line;
  std::getline(in, line);
  out << line << "\n";
  std::set<std::string> kept;
  while (std::getline(in, line)) {
    const std::string user = line.substr(0, line.find('\t'));
    if (!kept.count(user) && int(kept.size()) == users) continue;
    kept.insert(user);
    out << line << "\n";
  }
  return dir.Sub("slice.tsv");
}

TrainOptions SmallTraining(const testing::TempDir& dir, const std::string& log,
                           const std::string& out) {
  TrainOptions o;
  o.log_path = log;
  auto mapping = ReadLogMapping(kDataDir + "/mapping.textproto");
  EXPECT_TRUE(mapping.ok()) << mapping.status();
  o.mapping = *mapping;
  o.out = dir.Sub(out);
  o.embeddings.dim = 16;
  o.embeddings.epochs = 40;
  o.mlp.hidden = {32, 16};
  o.mlp.epochs = 6;
  o.negatives_per_row = 2;
  o.resamples = 30;
  o.utc_offset_minutes = 480;
  return o;
}

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    slice_ = new std::string(WriteSlice(*dir_, 150));
    TrainOptions o = SmallTraining(*dir_, *slice_, "bundle");
    o.replay_out = dir_->Sub("replay.jsonl");
    auto result = Train(o);
    ASSERT_TRUE(result.ok()) << result.status();
    result_ = new TrainResult(*std::move(result));
  }
  static void TearDownTestSuite() {
    delete result_;
    delete slice_;
    delete dir_;
  }

  static testing::TempDir* dir_;
  static std::string* slice_;
  static TrainResult* result_;
};

testing::TempDir* TrainerTest::dir_ = nullptr;
std::string* TrainerTest::slice_ = nullptr;
TrainResult* TrainerTest::result_ = nullptr;

TEST_F(TrainerTest, ConvergesAndBeatsChanceOnHeldOutDays) {
  const std::vector<double>& loss = result_->epoch_loss;
  ASSERT_EQ(loss.size(), 6u);
  EXPECT_LT(loss.back(), loss.front() * 0.95);
  EXPECT_GT(result_->model_auc.at("like"), 0.6);
  EXPECT_GT(result_->model_auc.at("long_view"), 0.55);
  EXPECT_THAT(result_->report, HasSubstr("| most popular (all training days) |"));
  EXPECT_EQ(result_->bundle->model->objectives().back(), "engage");
  EXPECT_GT(result_->ndcg.at("model"), result_->ndcg.at("random"));
  EXPECT_THAT(result_->report, HasSubstr("NDCG@10"));
}

TEST_F(TrainerTest, TheReportRanksTheModelAgainstTunedBaselinesWithPairedIntervals) {
  const std::string& r = result_->report;
  EXPECT_THAT(r, HasSubstr("Baselines tuned on validation"));
  EXPECT_THAT(r, HasSubstr("| popularity, recent window | 12 h |"));
  EXPECT_THAT(r, HasSubstr("| EASE | lambda 250 |"));
  EXPECT_THAT(r, HasSubstr("(best baseline)"));
  EXPECT_THAT(r, HasSubstr("paired bootstrap"));
  EXPECT_THAT(r, HasSubstr("cold, with no training row"));
  // The shipped log has no creator column: the report says what that
  // makes inert.
  EXPECT_THAT(r, HasSubstr("no creator column"));
  EXPECT_THAT(r, HasSubstr("creator cap are inert"));
  EXPECT_THAT(r, HasSubstr("| implicit ALS (dim 32) | reg "));
  // The value weights were chosen on validation, among the candidates.
  EXPECT_THAT(r, HasSubstr("**Value weights chosen on validation**"));
  EXPECT_FALSE(result_->eval_weights.empty());
  bool candidate = false;
  for (const auto& c : WeightCandidates("like", "engage")) {
    candidate |= c == result_->eval_weights;
  }
  EXPECT_TRUE(candidate);
  EXPECT_TRUE(result_->ndcg.count("recent_popular"));
  EXPECT_TRUE(result_->ndcg.count("ease"));
  // The best baseline is the baseline with the highest held-out NDCG.
  double best = -1;
  std::string best_name;
  for (const char* name : {"random", "popular", "embeddings", "recent_popular", "ease",
                           "live_popular", "als"}) {
    if (result_->ndcg.at(name) > best) {
      best = result_->ndcg.at(name);
      best_name = name;
    }
  }
  EXPECT_EQ(result_->best_baseline, best_name);
  EXPECT_NEAR(result_->model_minus_best, result_->ndcg.at("model") - best, 1e-9);
  EXPECT_LE(result_->model_minus_best_lo, result_->model_minus_best);
  EXPECT_GE(result_->model_minus_best_hi, result_->model_minus_best);
}

TEST(TrainerWarningTest, TooFewEvaluatedUsersWarnAndFailWithStrict) {
  testing::TempDir dir;
  const std::string slice = WriteSlice(dir, 40);
  TrainOptions o = SmallTraining(dir, slice, "warned");
  o.mlp.epochs = 1;
  o.min_eval_users = 1000000;
  auto warned = Train(o);
  ASSERT_TRUE(warned.ok()) << warned.status();
  EXPECT_THAT(warned->report, HasSubstr("**WARNING**: every figure below rests on"));
  o.out = dir.Sub("strict");
  o.strict = true;
  auto strict = Train(o);
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(strict.status().message()), HasSubstr("--strict"));
  o.out = dir.Sub("bad");
  for (int days : {0, 31}) {
    o.validation_days = days;
    EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("validation_days"));
  }
  o.validation_days = 1;
  o.min_eval_users = -1;
  EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("min_eval_users"));
}

TEST_F(TrainerTest, SameSeedSameBundleBytes) {
  testing::TempDir other;
  TrainOptions o = SmallTraining(other, *slice_, "again");
  o.evaluate = false;
  ASSERT_TRUE(Train(o).ok());
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir_->Sub("bundle"))) {
    if (!entry.is_regular_file()) continue;
    const std::string relative =
        std::filesystem::relative(entry.path(), dir_->Sub("bundle")).string();
    EXPECT_EQ(testing::ReadFile(entry.path()),
              testing::ReadFile(other.Sub("again/" + relative)))
        << relative;
  }
}

TEST_F(TrainerTest, ServedPredictionsEqualTheTrainers) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.bundle_dir = dir_->Sub("bundle");
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->Load().ok());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::FeedRanker::NewStub(channel);
  const Catalog& catalog = *result_->bundle->catalog;
  const int64_t now = result_->bundle->manifest.data_time_ms() + 3'600'000;
  int compared = 0;
  for (uint64_t user : {catalog.user_id(0), catalog.user_id(7), uint64_t{999999999}}) {
    v1::RankFeedRequest request;
    request.set_user_id(user);
    request.set_count(30);
    request.mutable_context()->set_client_time_ms(now);
    request.mutable_context()->set_utc_offset_minutes(480);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->RankFeed(&context, request, &response).ok());
    ASSERT_EQ(response.items_size(), 30);
    for (const v1::RankedItem& item : response.items()) {
      const absl::StatusOr<RowMatrix> x =
          result_->TrainerFeatures(user, item.video_id(), now, 480);
      ASSERT_TRUE(x.ok()) << x.status();
      const RowMatrix p = result_->TrainerPredict(*x);
      ASSERT_EQ(p.cols(), item.predictions_size());
      for (int h = 0; h < p.cols(); ++h) {
        EXPECT_NEAR(p(0, h), item.predictions(h), 1e-5)
            << "user " << user << " head " << h;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 90);
}

TEST_F(TrainerTest, AModelWithEngagementFeaturesNeedsItsEngagementFiles) {
  testing::TempDir copies;
  testing::CopyDir(dir_->Sub("bundle"), copies.Sub("some"));
  std::filesystem::remove(copies.Sub("some/history_times.npy"));
  auto some = LoadBundle(copies.Sub("some"));
  EXPECT_EQ(some.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(some.status().message()), HasSubstr("all three or none"));
  testing::CopyDir(dir_->Sub("bundle"), copies.Sub("none"));
  for (const char* f : {"trending.npy", "history_ids.npy", "history_times.npy"}) {
    std::filesystem::remove(copies.Sub(absl::StrCat("none/", f)));
  }
  auto none = LoadBundle(copies.Sub("none"));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("uses the trending or history features but the bundle has no"));
}

TEST_F(TrainerTest, TrainerFeaturesOfAVideoNotInTheBundleIsNotFound) {
  const Catalog& catalog = *result_->bundle->catalog;
  constexpr uint64_t kUnknown = 123456789012;
  ASSERT_FALSE(catalog.VideoRow(kUnknown).has_value());
  for (uint64_t user : {catalog.user_id(0), uint64_t{999999999}}) {  // known, cold start
    const absl::StatusOr<RowMatrix> x = result_->TrainerFeatures(user, kUnknown, 0, 0);
    EXPECT_EQ(x.status().code(), absl::StatusCode::kNotFound) << user;
    EXPECT_THAT(std::string(x.status().message()), HasSubstr("123456789012")) << user;
  }
  EXPECT_TRUE(
      result_->TrainerFeatures(catalog.user_id(0), catalog.video_id(0), 0, 0).ok());
}

TEST_F(TrainerTest, ReplayLogHoldsEveryHeldOutRowOnce) {
  // (user, item, time) of a row; a multiset of them on either side, so a row
  // written twice and another missing do not cancel out.
  using Event = std::tuple<uint64_t, uint64_t, int64_t>;
  std::vector<Event> outcomes;
  auto read = ReadReplayLog(dir_->Sub("replay.jsonl"), BadRecordPolicy::kFail);
  ASSERT_TRUE(read.ok()) << read.status();
  int records = 0;
  for (const v1::ReplayRecord& record : *read) {
    ++records;
    EXPECT_EQ(record.positive_objective(), "like");
    EXPECT_EQ(record.request().context().client_time_ms(), record.time_ms());
    ASSERT_GT(record.outcomes_size(), 0);
    EXPECT_EQ(record.time_ms(), record.outcomes(0).time_ms());
    EXPECT_EQ(record.objectives_size(), 8);
    for (const auto& outcome : record.outcomes()) {
      EXPECT_EQ(outcome.labels_size(), 8);
      EXPECT_GE(outcome.time_ms(), record.time_ms());
      outcomes.emplace_back(record.request().user_id(), outcome.video_id(),
                            outcome.time_ms());
    }
  }
  EXPECT_GT(records, 0);
  auto mapping = ReadLogMapping(kDataDir + "/mapping.textproto");
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  auto log = ReadInteractionLog(*slice_, *mapping);
  ASSERT_TRUE(log.ok()) << log.status();
  auto split = SplitByTime(*log, 3);
  ASSERT_TRUE(split.ok()) << split.status();
  std::vector<Event> held_out;
  for (size_t r : split->test) {
    held_out.emplace_back(log->users[r], log->items[r], log->time_ms[r]);
  }
  std::sort(outcomes.begin(), outcomes.end());
  std::sort(held_out.begin(), held_out.end());
  std::vector<Event> missing, extra;
  std::set_difference(held_out.begin(), held_out.end(), outcomes.begin(), outcomes.end(),
                      std::back_inserter(missing));
  std::set_difference(outcomes.begin(), outcomes.end(), held_out.begin(), held_out.end(),
                      std::back_inserter(extra));
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " held-out rows are not outcomes, e.g. user "
                               << std::get<0>(missing[0]) << " item "
                               << std::get<1>(missing[0]) << " at "
                               << std::get<2>(missing[0]);
  EXPECT_TRUE(extra.empty())
      << extra.size() << " outcomes are not held-out rows or repeat one, e.g. user "
      << std::get<0>(extra[0]) << " item " << std::get<1>(extra[0]) << " at "
      << std::get<2>(extra[0]);
}

TEST(TrainerInputTest, AnotherDomainWorksWithAMappingAlone) {
  // Ratings 1..5 of a movie site: "like" is a rating of 4 or more; times in
  // seconds; no durations, no creators.
  testing::TempDir dir;
  std::ofstream out(dir.Sub("ratings.csv"));
  out << "userId,movieId,rating,timestamp\n";
  std::mt19937_64 rng(3);
  const int64_t start = 1'600'000'000;
  for (int u = 0; u < 200; ++u) {
    const int taste = u % 4;
    for (int k = 0; k < 30; ++k) {
      const int movie = (rng() % 2 == 0) ? taste * 50 + rng() % 50 : rng() % 200;
      const double rating = movie / 50 == taste ? 4 + rng() % 2 : 1 + rng() % 3;
      out << u << "," << movie << "," << rating << "," << start + k * 40000 + u << "\n";
    }
  }
  out.close();
  auto mapping = ParseLogMapping(R"pb(
    user_column: "userId"
    item_column: "movieId"
    time_column: "timestamp"
    time_unit: SECONDS
    objectives { name: "like" column: "rating" threshold: 4 }
  )pb");
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  TrainOptions o;
  o.log_path = dir.Sub("ratings.csv");
  o.mapping = *mapping;
  o.out = dir.Sub("bundle");
  o.holdout_days = 2;
  o.embeddings.dim = 8;
  o.mlp.epochs = 4;
  o.resamples = 20;
  auto result = Train(o);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->bundle->model->objectives(),
            std::vector<std::string>({"like", "engage"}));
  EXPECT_GT(result->model_auc.at("like"), 0.8);  // the taste is easy to learn
  EXPECT_GT(result->ndcg.at("model"), result->ndcg.at("random"));
}

TEST(TrainerInputTest, WithoutAnEngageHeadNegativesLabelEveryBinaryObjective) {
  testing::TempDir dir;
  TrainOptions o = SmallTraining(dir, WriteSlice(dir, 60), "bundle");
  o.engage_objective = "";
  o.evaluate = false;
  auto result = Train(o);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->bundle->model->objectives().size(), 8u);
  o.engage_objective = "like";  // clashes with a log objective
  o.out = dir.Sub("clash");
  EXPECT_THAT(std::string(Train(o).status().message()),
              HasSubstr("already an objective"));
}

// `log` with field `column` of its first row replaced by `value`.
std::string WithFirstRowField(const testing::TempDir& dir, const std::string& log,
                              int column, const std::string& value) {
  std::vector<std::string> lines = absl::StrSplit(testing::ReadFile(log), '\n');
  std::vector<std::string> fields = absl::StrSplit(lines[1], '\t');
  fields[column] = value;
  lines[1] = absl::StrJoin(fields, "\t");
  const std::string path = dir.Sub(absl::StrCat("edited-", column, "-", value, ".tsv"));
  testing::WriteFile(path, absl::StrJoin(lines, "\n"));
  return path;
}

TEST(TrainerInputTest, HugeTimesAndDurationsAreBlamedOnTheLog) {
  testing::TempDir dir;
  const std::string slice = WriteSlice(dir, 20);
  constexpr int kTimeColumn = 4, kDurationColumn = 11;  // of the shipped log
  struct Case {
    int column;
    const char* value;
    const char* column_name;
  };
  int n = 0;
  for (const Case& c : std::vector<Case>{{kTimeColumn, "1e300", "time_ms"},
                                         {kTimeColumn, "9.3e18", "time_ms"},
                                         {kDurationColumn, "inf", "duration_ms"},
                                         {kDurationColumn, "1e300", "duration_ms"}}) {
    const std::string log = WithFirstRowField(dir, slice, c.column, c.value);
    const std::string out = absl::StrCat("bundle", n++);
    TrainOptions o = SmallTraining(dir, log, out);
    o.evaluate = false;
    const absl::Status status = Train(o).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.value;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(absl::StrCat(log, ":2: column '", c.column_name, "' holds '",
                                       c.value, "'")));
    EXPECT_THAT(std::string(status.message()), ::testing::Not(HasSubstr(".npy")));
    EXPECT_FALSE(std::filesystem::exists(dir.Sub(out))) << c.value;
  }
}

TEST(TrainerInputTest, BadInputIsRefusedAndWritesNothing) {
  testing::TempDir dir;
  const std::string slice = WriteSlice(dir, 20);
  {
    TrainOptions o = SmallTraining(dir, slice, "a");
    o.holdout_days = 400;
    EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("no rows to train"));
  }
  {
    TrainOptions o = SmallTraining(dir, slice, "b");
    o.mapping.set_retrieval_objective("share");  // almost no shares in 20 users
    o.mapping.mutable_objectives(5)->set_threshold(99);
    auto result = Train(o);
    EXPECT_THAT(std::string(result.status().message()), HasSubstr("no positive"));
  }
  {
    TrainOptions o = SmallTraining(dir, slice, "c");
    o.mapping.set_user_column("viewer");
    EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("'viewer'"));
  }
  {
    TrainOptions o = SmallTraining(dir, dir.Sub("missing.tsv"), "d");
    EXPECT_EQ(Train(o).status().code(), absl::StatusCode::kNotFound);
  }
  {
    TrainOptions o = SmallTraining(dir, slice, "f");
    o.replay_out = dir.Sub("f.jsonl");
    RankingConfig bad;
    (*bad.mutable_params()->mutable_objective_weights())["shares"] = 1;
    o.eval_config = bad;
    EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("shares"));
    EXPECT_FALSE(std::filesystem::exists(dir.Sub("f.jsonl")));
  }
  for (const char* name : {"a", "b", "c", "d", "f"}) {
    EXPECT_FALSE(std::filesystem::exists(dir.Sub(name))) << name;
  }
  {
    TrainOptions o = SmallTraining(dir, slice, "e");
    o.evaluate = false;
    ASSERT_TRUE(Train(o).ok());
    EXPECT_EQ(Train(o).status().code(), absl::StatusCode::kAlreadyExists);
  }
}

TEST_F(TrainerTest, ServedTrendingAndHistoryFeaturesEqualTheTrainersAfterTheSameEvents) {
  const std::vector<std::string>& groups = result_->bundle->features.ColumnNames();
  ASSERT_TRUE(result_->bundle->features.uses_engagement());
  ASSERT_NE(std::find(groups.begin(), groups.end(), "trending[0]"), groups.end());
  testing::TempDir work;
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.admin_address = "127.0.0.1:0";
  options.bundle_dir = dir_->Sub("bundle");
  options.watch_interval = absl::ZeroDuration();
  options.live.wal_dir = work.Sub("wal");
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  auto stub = v1::FeedRanker::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));
  auto admin = v1::FeedAdmin::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->admin_port()),
                          grpc::InsecureChannelCredentials()));
  const Catalog& catalog = *result_->bundle->catalog;
  const int64_t now = result_->bundle->manifest.data_time_ms() + 3'600'000;
  // Events after the bundle's data: user 0 watches three videos, user 7
  // likes one of them, a cold user watches another.
  const uint64_t u0 = catalog.user_id(0), u7 = catalog.user_id(7), cold = 999999999;
  std::vector<EngagementEvent> events;
  for (int i = 0; i < 3; ++i) {
    events.push_back(
        {u0, catalog.video_id(3 + i), now - 1'800'000 + i * 600'000, i != 1});
  }
  events.push_back({u7, catalog.video_id(3), now - 300'000, true});
  events.push_back({cold, catalog.video_id(11), now - 60'000, true});
  v1::RecordEventsRequest request;
  for (const EngagementEvent& e : events) {
    v1::EngagementEvent* out = request.add_events();
    out->set_user_id(e.user_id);
    out->set_video_id(e.video_id);
    out->set_time_ms(e.time_ms);
    out->set_positive(e.positive);
  }
  {
    v1::UpdateResponse ack;
    grpc::ClientContext context;
    const grpc::Status recorded = admin->RecordEvents(&context, request, &ack);
    ASSERT_TRUE(recorded.ok()) << recorded.error_message();
    EXPECT_EQ(ack.events(), 5u);
  }
  // The trainer's side: the bundle as written, with the same events.
  TrainResult trainer = *result_;
  auto fresh = LoadBundle(dir_->Sub("bundle"));
  ASSERT_TRUE(fresh.ok());
  trainer.bundle = *fresh;
  const RowMatrix before = *trainer.TrainerFeatures(u0, catalog.video_id(4), now, 480);
  trainer.bundle->engagement->Record(events);
  const RowMatrix after = *trainer.TrainerFeatures(u0, catalog.video_id(4), now, 480);
  // The events change the features (so the comparison below can fail).
  EXPECT_GT((after - before).cwiseAbs().maxCoeff(), 0.1f);
  int compared = 0;
  for (uint64_t user : {u0, u7, cold}) {
    v1::RankFeedRequest rank;
    rank.set_user_id(user);
    rank.set_count(30);
    rank.mutable_context()->set_client_time_ms(now);
    rank.mutable_context()->set_utc_offset_minutes(480);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->RankFeed(&context, rank, &response).ok());
    ASSERT_EQ(response.items_size(), 30);
    for (const v1::RankedItem& item : response.items()) {
      const absl::StatusOr<RowMatrix> x =
          trainer.TrainerFeatures(user, item.video_id(), now, 480);
      ASSERT_TRUE(x.ok()) << x.status();
      const RowMatrix p = trainer.TrainerPredict(*x);
      ASSERT_EQ(p.cols(), item.predictions_size());
      for (int h = 0; h < p.cols(); ++h) {
        EXPECT_NEAR(p(0, h), item.predictions(h), 1e-5)
            << "user " << user << " head " << h;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 90);
}

TEST(PointInTimeTest, AFeatureRowSeesOnlyTheEventsStrictlyBeforeItsTime) {
  InteractionLog log;
  log.objectives = {"like"};
  // Rows of one video: times 1000, 2000, 2000, 3000 h; likes except row 1.
  constexpr int64_t kHour = 3600000;
  for (int64_t t : {1000, 2000, 2000, 3000}) {
    log.users.push_back(uint64_t(t));
    log.items.push_back(42);
    log.time_ms.push_back(t * kHour);
    log.labels.push_back(log.size() == 2 ? 0.f : 1.f);
  }
  BundleManifest m;
  m.set_dim(1);
  m.set_num_videos(1);
  m.set_num_users(0);
  VideoColumns v;
  v.ids = {42};
  v.embeddings = {1};
  v.creator_ids = {42};
  v.duration_ms = v.upload_time_ms = {0};
  v.popularity = {0};
  auto catalog = Catalog::Create(m, std::move(v), UserColumns(), nullptr);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EngagementState state(**catalog, 0);
  const std::vector<size_t> rows = {0, 1, 2, 3};
  size_t next = 0;
  auto views_at = [&](int64_t hours) {
    float c[kTrendColumns];
    EngagementState::Reader(&state, hours * kHour).TrendingOf(42, c);
    return c[2];  // 24 h half-life
  };
  // The first row sees nothing, not even itself.
  RecordBefore(log, rows, 1000 * kHour, &next, &state);
  EXPECT_EQ(next, 0u);
  EXPECT_EQ(state.recorded(), 0);
  // The rows at 2000 h see row 0 only: not each other, not row 3.
  RecordBefore(log, rows, 2000 * kHour, &next, &state);
  EXPECT_EQ(next, 1u);
  EXPECT_NEAR(views_at(2000), std::exp2(-1000.0 / 24), 1e-9);
  RecordBefore(log, rows, 2000 * kHour, &next, &state);
  EXPECT_EQ(next, 1u);
  // The row at 3000 h sees the three before it.
  RecordBefore(log, rows, 3000 * kHour, &next, &state);
  EXPECT_EQ(next, 3u);
  EXPECT_EQ(state.recorded(), 3);
  // Rows 1 and 2 are both user 2000's.
  EXPECT_THAT(EngagementState::Reader(&state, 3000 * kHour).History(2000),
              ::testing::ElementsAre(42, 42));
  EXPECT_TRUE(EngagementState::Reader(&state, 3000 * kHour).History(3000).empty());
  const EngagementEvent e = EventOf(log, 1);
  EXPECT_EQ(e.video_id, 42u);
  EXPECT_FALSE(e.positive);
  EXPECT_TRUE(EventOf(log, 0).positive);
}

TEST(TrainerSplitTest, PerUserSplitAndAblationsRunAndSayWhatTheyAre) {
  testing::TempDir dir;
  const std::string slice = WriteSlice(dir, 60);
  TrainOptions o = SmallTraining(dir, slice, "per-user");
  o.mlp.epochs = 2;
  o.split = "last-n-per-user";
  o.last_n = 3;
  o.tune_weights = false;
  o.ablations = true;
  auto run = Train(o);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_THAT(run->report, HasSubstr("split last-n-per-user"));
  EXPECT_THAT(run->report, HasSubstr("| without trending |"));
  EXPECT_THAT(run->report, HasSubstr("| without trending and history |"));
  EXPECT_TRUE(run->ndcg.count("model without history"));
  o.out = dir.Sub("bad");
  o.split = "random";
  EXPECT_THAT(std::string(Train(o).status().message()), HasSubstr("split: 'random'"));
}

}  // namespace
}  // namespace feedrank
