#include "replay/replayer.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/quote.h"
#include "base/simd.h"
#include "base/status_macros.h"
#include "evaluation/metrics.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "ranking/experiments.h"
#include "ranking/options.h"
#include "ranking/ranker.h"
#include "ranking/request.h"

namespace feedrank {
namespace {

constexpr int kStages = static_cast<int>(RankStage::kNumStages);
// Below this many users an interval is flagged as resting on too few.
constexpr int64_t kFewUsers = 30;

// A clock whose wall time is the logged request's and whose steady time is
// real, so that a replayed request is ranked "as of" its log time while
// stage timings stay real.
class LoggedTimeClock : public Clock {
 public:
  explicit LoggedTimeClock(int64_t unix_ms) : unix_ms_(unix_ms) {}
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  int64_t UnixMillis() const override { return unix_ms_; }

 private:
  int64_t unix_ms_;
};

// What one variant did with one request.
struct PageResult {
  bool ok = false;
  std::string error;  // gRPC / absl code name when !ok
  bool degraded = false;
  std::vector<uint64_t> page;
  std::vector<uint64_t> creators;
  // page.size() x heads (the variant's model objectives); empty when the
  // model did not run.
  std::vector<float> predictions;
  // Relevant videos among each source's candidates (in process only).
  int32_t source_hits[4] = {0, 0, 0, 0};
  bool has_sources = false;
  int64_t stage_us[kStages] = {};
  bool has_stages = false;
  int64_t total_us = 0;
  // Sweep: the ANN source's recall of the exact top candidates.
  double recall_vs_exact = std::nan("");
};

// A record's relevance, fixed across variants.
struct Truth {
  int32_t user = 0;  // index into the sorted user list
  absl::flat_hash_set<uint64_t> relevant;
  // video -> its labels, for the AUC and log loss of the page's items.
  absl::flat_hash_map<uint64_t, const v1::ReplayOutcome*> outcomes;
  // Label index of each objective name in the record.
  const v1::ReplayRecord* record = nullptr;
};

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

std::vector<bool> Relevance(const std::vector<uint64_t>& page, const Truth& truth) {
  std::vector<bool> out(page.size());
  for (size_t i = 0; i < page.size(); ++i) out[i] = truth.relevant.contains(page[i]);
  return out;
}

// ---- In process -----------------------------------------------------------

class InProcessVariant {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessVariant>> Create(
      const ReplayVariant& v) {
    if (v.bundle == nullptr) return Invalid("variant " + v.name, "has no bundle");
    auto fail = [&](absl::string_view why) {
      return absl::FailedPreconditionError(absl::StrCat(
          "variant ", QuoteForError(v.name), ": config ", QuoteForError(v.config_path),
          " does not resolve against bundle ", QuoteForError(v.bundle_path), ": ", why));
    };
    // Offline, any arm may be pinned, whatever the config allows requests.
    RankingConfig config = v.config;
    if (!v.pins.empty()) config.set_allow_pinning(true);
    auto experiments = ExperimentConfig::Create(config, v.bundle->model->objectives());
    if (!experiments.ok()) return fail(experiments.status().message());
    std::unique_ptr<InProcessVariant> out(new InProcessVariant(
        v, std::make_unique<ExperimentConfig>(*std::move(experiments))));
    // The bundles arms may select, loaded once; they must score the same
    // objectives as the default bundle (the arms' weights were resolved
    // against its model).
    // Relative dirs resolve against the directory holding --bundle, as in
    // the server.
    const std::string base = ParentDir(v.bundle_path);
    for (const v1::BundleRef& ref : v.config.bundles()) {
      auto dir = ResolveBundleRefDir(base, ref.dir(), /*confine=*/false);
      if (!dir.ok()) return fail(dir.status().message());
      auto bundle = LoadBundle(*dir);
      if (!bundle.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("variant ", QuoteForError(v.name), ": bundles ",
                         QuoteForError(ref.name()), ": ", bundle.status().message()));
      }
      if ((*bundle)->model->objectives() != v.bundle->model->objectives()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "variant ", QuoteForError(v.name), ": bundles ", QuoteForError(ref.name()),
            " scores other objectives than the default bundle"));
      }
      out->bundles_[ref.name()] = *std::move(bundle);
    }
    // One ranker per combination of arms, as the server makes them.
    auto rankers = CreateArmRankers(
        *out->experiments_,
        [&](const std::string& name) -> absl::StatusOr<std::shared_ptr<const Bundle>> {
          if (name.empty()) return v.bundle;
          return out->bundles_.at(name);  // ExperimentConfig checked the name
        },
        RankerCosts(), Clock::Real());
    if (!rankers.ok()) return fail(rankers.status().message());
    out->rankers_ = *std::move(rankers);
    // Pins are checked when the variant is made, not per request.
    Assignment assignment;
    if (absl::Status s = out->experiments_->Assign(0, out->pins_, &assignment); !s.ok()) {
      return Invalid("variant " + v.name, std::string(s.message()));
    }
    return out;
  }

  void Run(const v1::ReplayRecord& record, const Truth& truth, bool exact_recall,
           PageResult* out) const {
    thread_local Assignment assignment;
    if (absl::Status s =
            experiments_->Assign(record.request().user_id(), pins_, &assignment);
        !s.ok()) {
      out->ok = false;
      out->error = absl::StatusCodeToString(s.code());
      return;
    }
    RunWith(*rankers_[assignment.combination], record, truth, exact_recall, out);
  }

 private:
  InProcessVariant(const ReplayVariant& v, std::unique_ptr<ExperimentConfig> experiments)
      : bundle_(v.bundle), pins_(v.pins), experiments_(std::move(experiments)) {}

  void RunWith(const Ranker& ranker, const v1::ReplayRecord& record, const Truth& truth,
               bool exact_recall, PageResult* out) const {
    const auto start = std::chrono::steady_clock::now();
    LoggedTimeClock clock(record.time_ms());
    RankRequest request;
    absl::Status status = RankRequestFromProto(record.request(), clock, &request);
    const CatalogView& view = *ranker.bundle().view;
    if (status.ok()) status = ranker.Validate(view, request, clock.Now());
    if (!status.ok()) {
      out->ok = false;
      out->error = absl::StatusCodeToString(status.code());
      out->total_us = MicrosBetween(start, std::chrono::steady_clock::now());
      return;
    }
    thread_local CandidateBatch batch;
    thread_local RankResult result;
    batch.Clear();
    ranker.LookUpUser(view, request, &batch);
    ranker.Retrieve(view, request, &batch);
    // Which source brought each relevant video.
    for (const Candidate& c : batch.candidates) {
      const uint64_t id = c.row >= 0 ? view.video_id(c.row) : c.video_id;
      if (!truth.relevant.contains(id)) continue;
      switch (c.source) {
        case CandidateSource::kAnn:
        case CandidateSource::kColdStart:
          ++out->source_hits[0];
          break;
        case CandidateSource::kPopular:
          ++out->source_hits[1];
          break;
        case CandidateSource::kFresh:
          ++out->source_hits[2];
          break;
        case CandidateSource::kTrending:
          ++out->source_hits[3];
          break;
      }
    }
    out->has_sources = true;
    // The ANN source's rows, for the exact-recall check after the timing.
    thread_local std::vector<int32_t> ann_rows;
    ann_rows.clear();
    if (exact_recall) {
      for (const Candidate& c : batch.candidates) {
        const bool ann =
            c.source == CandidateSource::kAnn || c.source == CandidateSource::kColdStart;
        if (ann && c.row >= 0) ann_rows.push_back(c.row);
      }
    }
    ranker.Score(view, request, &batch);
    ranker.Assemble(&view, request, &batch, &result);
    out->ok = true;
    out->degraded = result.degraded();
    out->page.clear();
    out->creators.clear();
    for (const RankedVideo& v : result.items) {
      out->page.push_back(v.video_id);
      out->creators.push_back(v.creator_id);
    }
    out->predictions.assign(result.predictions.begin(), result.predictions.end());
    for (int s = 0; s < kStages; ++s) out->stage_us[s] = result.stats.stage_micros[s];
    out->has_stages = true;
    out->total_us = MicrosBetween(start, std::chrono::steady_clock::now());
    // Untimed: a brute-force scan of the catalogue.
    if (exact_recall)
      out->recall_vs_exact = ExactRecall(ranker, view, request, batch.user, ann_rows);
  }

  // The ANN source's kept candidates against the exact top ann_candidates
  // live, not excluded rows by inner product.
  static double ExactRecall(const Ranker& ranker, const CatalogView& view,
                            const RankRequest& request, const UserQuery& user,
                            const std::vector<int32_t>& ann_rows) {
    const int want = ranker.options().ann_candidates;
    if (want == 0 || user.embedding == nullptr) return std::nan("");
    absl::flat_hash_set<uint64_t> excluded(request.exclude_ids.begin(),
                                           request.exclude_ids.end());
    std::vector<Hit> all;
    all.reserve(view.num_rows());
    for (int32_t row = 0; row < view.num_rows(); ++row) {
      if (!view.live(row) || excluded.contains(view.video_id(row))) continue;
      all.push_back(
          {simd::Dot(user.embedding, view.video_embedding(row), view.dim()), row});
    }
    const size_t n = std::min<size_t>(all.size(), want);
    if (n == 0) return std::nan("");
    std::partial_sort(all.begin(), all.begin() + n, all.end(), HitIsBetter());
    absl::flat_hash_set<int32_t> exact;
    for (size_t i = 0; i < n; ++i) exact.insert(all[i].row);
    int found = 0;
    for (int32_t row : ann_rows) found += exact.contains(row);
    return double(found) / double(n);
  }

  std::shared_ptr<const Bundle> bundle_;
  std::vector<ArmPin> pins_;
  std::unique_ptr<ExperimentConfig> experiments_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Bundle>> bundles_;
  // By arm combination (Assignment::combination).
  std::vector<std::unique_ptr<Ranker>> rankers_;
};

// Runs every record through `variant` on `threads` threads; returns the
// wall time in seconds.
double RunInProcess(const InProcessVariant& variant,
                    const std::vector<v1::ReplayRecord>& records,
                    const std::vector<Truth>& truths, const ReplayOptions& options,
                    const std::string& name, std::vector<PageResult>* results) {
  results->assign(records.size(), PageResult());
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  // Each thread first warms its scratch memory and the caches on a few
  // requests, untimed; the timed run starts when all are warm.
  const size_t warm = std::min<size_t>(records.size(), 32);
  absl::Mutex mu;
  int warm_threads = 0;
  std::chrono::steady_clock::time_point start;
  auto work = [&] {
    PageResult scratch;
    for (size_t i = 0; i < warm; ++i) variant.Run(records[i], truths[i], false, &scratch);
    {
      absl::MutexLock lock(&mu);
      if (++warm_threads == options.threads) start = std::chrono::steady_clock::now();
      auto all_warm = [&] { return warm_threads == options.threads; };
      mu.Await(absl::Condition(&all_warm));
    }
    while (true) {
      const int64_t i = next.fetch_add(1);
      if (i >= int64_t(records.size())) return;
      variant.Run(records[i], truths[i], options.exact_recall, &(*results)[i]);
      done.fetch_add(1);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < options.threads; ++t) pool.emplace_back(work);
  if (options.progress) {
    while (done.load() < int64_t(records.size())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      options.progress(done.load(), records.size(), name);
    }
  }
  for (std::thread& t : pool) t.join();
  const auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(end - start).count();
}

// ---- Against a target ------------------------------------------------------

// Sends every record to `target`, closed or open loop, with the gRPC
// callback API; returns the wall time in seconds. Latency is from the
// scheduled time in open loop (no coordinated omission), from the send in
// closed loop.
absl::StatusOr<double> RunAgainstTarget(const std::string& target,
                                        const std::vector<v1::ReplayRecord>& records,
                                        const ReplayOptions& options,
                                        const std::string& name,
                                        std::vector<PageResult>* results) {
  results->assign(records.size(), PageResult());
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(10))) {
    return absl::UnavailableError(
        absl::StrCat("variant ", QuoteForError(name), ": cannot connect to ", target));
  }
  auto stub = v1::FeedRanker::NewStub(channel);
  struct Call {
    grpc::ClientContext context;
    v1::RankFeedRequest request;
    v1::RankFeedResponse response;
    std::chrono::steady_clock::time_point start;
    size_t index = 0;
  };
  absl::Mutex mu;
  int64_t in_flight = 0;
  int64_t done = 0;
  const int64_t first_ms = records.empty() ? 0 : records.front().time_ms();
  const auto begin = std::chrono::steady_clock::now();
  for (size_t i = 0; i < records.size(); ++i) {
    auto scheduled = std::chrono::steady_clock::now();
    if (options.open_loop) {
      const double offset_s =
          double(records[i].time_ms() - first_ms) / 1000.0 / options.speed;
      scheduled = begin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(std::max(0.0, offset_s)));
      std::this_thread::sleep_until(scheduled);
    }
    {
      absl::MutexLock lock(&mu);
      auto room = [&] { return in_flight < options.concurrency; };
      mu.Await(absl::Condition(&room));
      ++in_flight;
    }
    if (!options.open_loop) scheduled = std::chrono::steady_clock::now();
    auto* call = new Call;
    call->index = i;
    call->start = scheduled;
    call->request = records[i].request();
    // Stage timings come back in the debug section.
    call->request.set_debug(true);
    if (call->request.context().client_time_ms() == 0 && records[i].time_ms() > 0) {
      call->request.mutable_context()->set_client_time_ms(records[i].time_ms());
    }
    call->context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::milliseconds(options.deadline_ms));
    stub->async()->RankFeed(
        &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
          PageResult& out = (*results)[call->index];
          out.total_us = MicrosBetween(call->start, std::chrono::steady_clock::now());
          out.ok = status.ok();
          if (!status.ok()) {
            out.error = absl::StatusCodeToString(
                static_cast<absl::StatusCode>(status.error_code()));
          } else {
            out.degraded = call->response.degraded();
            for (const v1::RankedItem& item : call->response.items()) {
              out.page.push_back(item.video_id());
              out.creators.push_back(item.creator_id());
              for (float p : item.predictions()) out.predictions.push_back(p);
            }
            if (call->response.has_debug()) {
              for (const v1::StageTiming& t : call->response.debug().stages()) {
                for (int s = 0; s < kStages; ++s) {
                  if (t.stage() == RankStageName(static_cast<RankStage>(s))) {
                    out.stage_us[s] = t.micros();
                  }
                }
              }
              out.has_stages = true;
            }
          }
          delete call;
          absl::MutexLock lock(&mu);
          --in_flight;
          ++done;
        });
    if (options.progress && i % 64 == 0) {
      int64_t d;
      {
        absl::MutexLock lock(&mu);
        d = done;
      }
      options.progress(d, records.size(), name);
    }
  }
  {
    absl::MutexLock lock(&mu);
    auto idle = [&] { return in_flight == 0; };
    mu.Await(absl::Condition(&idle));
  }
  if (options.progress) options.progress(records.size(), records.size(), name);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

// ---- Figures ---------------------------------------------------------------

// Per-user means of a per-request metric; NaN for a user with no defined
// value.
std::vector<double> PerUser(const std::vector<double>& per_request,
                            const std::vector<Truth>& truths, int64_t users) {
  std::vector<double> sum(users, 0.0);
  std::vector<int64_t> n(users, 0);
  for (size_t i = 0; i < per_request.size(); ++i) {
    if (std::isnan(per_request[i])) continue;
    sum[truths[i].user] += per_request[i];
    ++n[truths[i].user];
  }
  std::vector<double> out(users, std::nan(""));
  for (int64_t u = 0; u < users; ++u) {
    if (n[u] > 0) out[u] = sum[u] / double(n[u]);
  }
  return out;
}

std::vector<double> Defined(const std::vector<double>& v) {
  std::vector<double> out;
  for (double x : v) {
    if (!std::isnan(x)) out.push_back(x);
  }
  return out;
}

int64_t CountDefined(const std::vector<double>& v) {
  return static_cast<int64_t>(Defined(v).size());
}

// One variant's per-request values of each metric, by name, in report
// order; and the labelled rows of each head.
struct VariantFigures {
  std::vector<std::string> names;
  std::vector<std::vector<double>> per_request;
  struct Rows {
    std::vector<float> scores, labels;
    std::vector<int32_t> users;
  };
  std::map<std::string, Rows> heads;  // "auc/like" etc. share rows with logloss
  double coverage = std::nan("");
};

void SetMetric(v1::ReplayReport::Metric* metric, const std::string& name,
               const Interval& ci, int64_t users, int64_t requests) {
  metric->set_name(name);
  metric->set_value(ci.value);
  metric->set_lo(ci.lo);
  metric->set_hi(ci.hi);
  metric->set_users(users);
  metric->set_requests(requests);
}

void AddDelta(v1::ReplayReport::Variant* out, const std::string& name, const Interval& d,
              int64_t users, bool* any_few) {
  v1::ReplayReport::Delta* delta = out->add_deltas();
  delta->set_name(name);
  delta->set_delta(d.value);
  delta->set_lo(d.lo);
  delta->set_hi(d.hi);
  delta->set_significant(d.lo > 0 || d.hi < 0);
  delta->set_users(users);
  delta->set_few_users(users < kFewUsers);
  *any_few |= delta->few_users();
}

// The paired difference of per-user values (NaN = the user has none), over
// the users both variants have a value for.
void AddPairedDelta(v1::ReplayReport::Variant* out, const std::string& name,
                    const std::vector<double>& base_user,
                    const std::vector<double>& per_user, int resamples, uint64_t seed,
                    bool* any_few) {
  std::vector<double> a, b;
  for (size_t u = 0; u < per_user.size(); ++u) {
    if (std::isnan(per_user[u]) || std::isnan(base_user[u])) continue;
    a.push_back(base_user[u]);
    b.push_back(per_user[u]);
  }
  AddDelta(out, name, PairedDeltaWithCi(a, b, resamples, seed), int64_t(a.size()),
           any_few);
}

// Each user's mean log loss over their labelled rows; NaN for a user with
// none.
std::vector<double> LogLossPerUser(const VariantFigures::Rows& rows, int64_t users) {
  std::vector<double> sum(users, 0), n(users, 0);
  for (size_t i = 0; i < rows.scores.size(); ++i) {
    sum[rows.users[i]] += LogLoss({rows.scores[i]}, {rows.labels[i]});
    n[rows.users[i]] += 1;
  }
  std::vector<double> out(users, std::nan(""));
  for (int64_t u = 0; u < users; ++u) {
    if (n[u] > 0) out[u] = sum[u] / n[u];
  }
  return out;
}

}  // namespace

absl::Status ValidateReplayOptions(const ReplayOptions& o) {
  if (o.threads < 1 || o.threads > 256) return Invalid("threads", "must be in [1, 256]");
  if (o.k < 1 || o.k > 1000) return Invalid("k", "must be in [1, 1000]");
  if (o.bootstrap_resamples < 100 || o.bootstrap_resamples > 100000) {
    return Invalid("bootstrap_resamples", "must be in [100, 100000]");
  }
  if (o.top_diffs < 0 || o.top_diffs > 10000)
    return Invalid("top_diffs", "must be in [0, 10000]");
  if (o.concurrency < 1 || o.concurrency > 10000) {
    return Invalid("concurrency", "must be in [1, 10000]");
  }
  if (!(o.speed > 0) || !std::isfinite(o.speed)) return Invalid("speed", "must be > 0");
  if (o.deadline_ms < 1 || o.deadline_ms > 3600000) {
    return Invalid("deadline_ms", "must be in [1, 3600000]");
  }
  return absl::OkStatus();
}

absl::Status SetRankingParam(v1::RankingParams* params, const std::string& field,
                             int64_t value) {
  const google::protobuf::FieldDescriptor* f =
      params->GetDescriptor()->FindFieldByName(field);
  if (f == nullptr) {
    return Invalid("sweep", absl::StrCat(QuoteForError(field),
                                         " is not a field of feedrank.v1.RankingParams"));
  }
  const google::protobuf::Reflection* r = params->GetReflection();
  if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT32 &&
      !f->is_repeated()) {
    if (value < 0 || value > UINT32_MAX) {
      return Invalid("sweep", absl::StrCat(field, "=", value, " is outside [0, 2^32)"));
    }
    r->SetUInt32(params, f, static_cast<uint32_t>(value));
    return absl::OkStatus();
  }
  if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_FLOAT &&
      !f->is_repeated()) {
    r->SetFloat(params, f, static_cast<float>(value));
    return absl::OkStatus();
  }
  return Invalid("sweep",
                 absl::StrCat(QuoteForError(field), " is not a numeric parameter"));
}

absl::StatusOr<std::pair<std::string, std::vector<int64_t>>> ParseSweep(
    const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return Invalid("--sweep",
                   absl::StrCat(QuoteForError(text),
                                " is not FIELD=V1,V2,... e.g. ann_beam_width=128,256"));
  }
  std::pair<std::string, std::vector<int64_t>> out;
  out.first = text.substr(0, eq);
  for (absl::string_view part : absl::StrSplit(text.substr(eq + 1), ',')) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v)) {
      return Invalid("--sweep", absl::StrCat(QuoteForError(std::string(part)),
                                             " is not an integer"));
    }
    out.second.push_back(v);
  }
  v1::RankingParams probe;
  for (int64_t v : out.second) RETURN_IF_ERROR(SetRankingParam(&probe, out.first, v));
  return out;
}

absl::StatusOr<v1::ReplayReport> RunReplay(const std::vector<v1::ReplayRecord>& records,
                                           const std::vector<ReplayVariant>& variants,
                                           const ReplayOptions& options,
                                           const std::string& log_path,
                                           ReplayPages* pages) {
  RETURN_IF_ERROR(ValidateReplayOptions(options));
  if (variants.empty()) return Invalid("variants", "at least one is needed");
  const bool target_mode = !variants.front().target.empty();
  std::set<std::string> names;
  for (const ReplayVariant& v : variants) {
    if (v.target.empty() == target_mode) {
      return Invalid("variants", "either all run in process or all against targets");
    }
    if (!names.insert(v.name).second) {
      return Invalid("variants", absl::StrCat("two are named ", QuoteForError(v.name)));
    }
  }

  // Users in id order; each record's relevant videos.
  std::vector<uint64_t> user_ids;
  for (const v1::ReplayRecord& r : records) user_ids.push_back(r.request().user_id());
  std::sort(user_ids.begin(), user_ids.end());
  user_ids.erase(std::unique(user_ids.begin(), user_ids.end()), user_ids.end());
  std::vector<Truth> truths(records.size());
  std::string positive_name;
  int64_t with_positives = 0;
  std::set<int32_t> users_with_positives;
  for (size_t i = 0; i < records.size(); ++i) {
    const v1::ReplayRecord& r = records[i];
    Truth& t = truths[i];
    t.record = &r;
    t.user = static_cast<int32_t>(
        std::lower_bound(user_ids.begin(), user_ids.end(), r.request().user_id()) -
        user_ids.begin());
    std::string positive = options.positive_objective.empty()
                               ? r.positive_objective()
                               : options.positive_objective;
    int label = -1;
    for (int h = 0; h < r.objectives_size(); ++h) {
      if (positive.empty() || r.objectives(h) == positive) {
        label = h;
        break;
      }
    }
    if (label < 0 && r.outcomes_size() > 0) {
      return Invalid(
          "positive_objective",
          absl::StrCat(QuoteForError(positive), " is not an objective of record ", i,
                       " (request ", QuoteForError(r.request().request_id()), ")"));
    }
    if (label >= 0 && positive_name.empty()) positive_name = r.objectives(label);
    absl::flat_hash_set<uint64_t> excluded(r.request().exclude_ids().begin(),
                                           r.request().exclude_ids().end());
    for (const v1::ReplayOutcome& o : r.outcomes()) {
      t.outcomes.emplace(o.video_id(), &o);
      // A video the request excludes can never be on its page.
      if (label >= 0 && o.labels(label) >= 0.5f && !excluded.contains(o.video_id())) {
        t.relevant.insert(o.video_id());
      }
    }
    if (!t.relevant.empty()) {
      ++with_positives;
      users_with_positives.insert(t.user);
    }
  }
  const int64_t num_users = static_cast<int64_t>(user_ids.size());

  v1::ReplayReport report;
  report.set_log_path(log_path);
  report.set_mode(target_mode ? "target" : "in-process");
  report.set_records(static_cast<int64_t>(records.size()));
  report.set_users(num_users);
  report.set_requests_with_positives(with_positives);
  report.set_users_with_positives(static_cast<int64_t>(users_with_positives.size()));
  report.set_k(options.k);
  report.set_positive_objective(positive_name);
  report.set_seed(options.seed);
  report.set_bootstrap_resamples(options.bootstrap_resamples);
  report.set_latency_included(options.include_latency);
  report.set_threads(target_mode ? options.concurrency : options.threads);

  // Run every variant.
  std::vector<std::vector<PageResult>> results(variants.size());
  std::vector<double> seconds(variants.size(), 0);
  for (size_t v = 0; v < variants.size(); ++v) {
    if (target_mode) {
      ASSIGN_OR_RETURN(seconds[v], RunAgainstTarget(variants[v].target, records, options,
                                                    variants[v].name, &results[v]));
    } else {
      ASSIGN_OR_RETURN(std::unique_ptr<InProcessVariant> runner,
                       InProcessVariant::Create(variants[v]));
      seconds[v] =
          RunInProcess(*runner, records, truths, options, variants[v].name, &results[v]);
    }
  }

  if (pages != nullptr) {
    pages->assign(variants.size(), {});
    for (size_t v = 0; v < variants.size(); ++v) {
      for (const PageResult& r : results[v])
        (*pages)[v].push_back(r.ok ? r.page : std::vector<uint64_t>());
    }
  }

  // Per-request metrics per variant.
  const int k = options.k;
  std::vector<VariantFigures> figures(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    const ReplayVariant& variant = variants[v];
    const std::vector<PageResult>& rs = results[v];
    VariantFigures& f = figures[v];
    const CatalogView* view = variant.bundle ? variant.bundle->view.get() : nullptr;
    std::vector<std::string> heads;
    if (variant.bundle) heads = variant.bundle->model->objectives();
    auto add = [&](const std::string& name) {
      f.names.push_back(name);
      f.per_request.emplace_back(records.size(), std::nan(""));
      return f.per_request.size() - 1;
    };
    const size_t ndcg = add(absl::StrCat("ndcg@", k));
    const size_t recall = add(absl::StrCat("recall@", k));
    const size_t hit = add(absl::StrCat("hit_rate@", k));
    const bool sources = !rs.empty() && rs.front().has_sources;
    size_t source_metric[4] = {0, 0, 0, 0};
    if (sources) {
      source_metric[0] = add("retrieval_recall/ann");
      source_metric[1] = add("retrieval_recall/popular");
      source_metric[2] = add("retrieval_recall/fresh");
      source_metric[3] = add("retrieval_recall/trending");
    }
    const size_t diversity = add("creator_diversity");
    const size_t age = view != nullptr ? add("mean_age_hours") : 0;
    const bool any_served =
        std::any_of(records.begin(), records.end(),
                    [](const v1::ReplayRecord& r) { return r.has_served(); });
    const size_t served = any_served ? add("same_page_as_served") : 0;
    absl::flat_hash_set<uint64_t> shown;
    for (size_t i = 0; i < records.size(); ++i) {
      const PageResult& r = rs[i];
      const Truth& t = truths[i];
      // A failed call shows nothing: its ranking metrics count as 0.
      const std::vector<uint64_t> empty;
      const std::vector<uint64_t>& page = r.ok ? r.page : empty;
      const int relevant = static_cast<int>(t.relevant.size());
      if (relevant > 0) {
        const std::vector<bool> rel = Relevance(page, t);
        f.per_request[ndcg][i] = NdcgAtK(rel, relevant, k);
        f.per_request[recall][i] = RecallAtK(rel, relevant, k);
        f.per_request[hit][i] = HitAtK(rel, k);
        if (sources) {
          for (int s = 0; s < 4; ++s) {
            f.per_request[source_metric[s]][i] = double(r.source_hits[s]) / relevant;
          }
        }
      }
      if (!page.empty()) {
        std::set<uint64_t> creators(r.creators.begin(), r.creators.end());
        f.per_request[diversity][i] = double(creators.size()) / double(page.size());
        for (uint64_t id : page) shown.insert(id);
        if (view != nullptr) {
          double hours = 0;
          int n = 0;
          const int64_t now = records[i].request().context().client_time_ms() > 0
                                  ? records[i].request().context().client_time_ms()
                                  : records[i].time_ms();
          for (uint64_t id : page) {
            auto row = view->VideoRow(id);
            if (!row) continue;
            hours += double(now - view->upload_time_ms(*row)) / 3.6e6;
            ++n;
          }
          if (n > 0) f.per_request[age][i] = hours / n;
        }
      }
      if (any_served && records[i].has_served()) {
        const auto& logged = records[i].served().video_ids();
        f.per_request[served][i] =
            r.ok && std::equal(page.begin(), page.end(), logged.begin(), logged.end())
                ? 1.0
                : 0.0;
      }
      // Labelled items of the page, per head the record and model share.
      if (r.ok && !r.predictions.empty() && !heads.empty()) {
        const size_t width = heads.size();
        for (size_t h = 0; h < width; ++h) {
          int label = -1;
          for (int j = 0; j < t.record->objectives_size(); ++j) {
            if (t.record->objectives(j) == heads[h]) label = j;
          }
          if (label < 0) continue;
          VariantFigures::Rows& rows = f.heads[heads[h]];
          for (size_t p = 0; p < page.size() && (p + 1) * width <= r.predictions.size();
               ++p) {
            auto it = t.outcomes.find(page[p]);
            if (it == t.outcomes.end()) continue;
            const float y = it->second->labels(label);
            if (std::isnan(y)) continue;
            rows.scores.push_back(r.predictions[p * width + h]);
            rows.labels.push_back(y);
            rows.users.push_back(t.user);
          }
        }
      }
    }
    if (view != nullptr && view->num_live_videos() > 0) {
      f.coverage = double(shown.size()) / double(view->num_live_videos());
    }
  }

  // Report each variant: metrics with intervals, deltas, latency.
  const int b = options.bootstrap_resamples;
  bool any_few = false;
  for (size_t v = 0; v < variants.size(); ++v) {
    const ReplayVariant& variant = variants[v];
    const VariantFigures& f = figures[v];
    v1::ReplayReport::Variant* out = report.add_variants();
    out->set_name(variant.name);
    out->set_config_path(variant.config_path);
    out->set_config_version(variant.config.version());
    out->set_bundle_path(variant.bundle_path);
    if (variant.bundle) out->set_bundle_version(variant.bundle->manifest.version());
    out->set_sweep_override(variant.sweep_override);
    out->set_requests(static_cast<int64_t>(records.size()));
    int64_t same = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      const PageResult& r = results[v][i];
      if (!r.ok) {
        out->set_errors(out->errors() + 1);
        (*out->mutable_errors_by_code())[r.error] += 1;
      }
      if (r.degraded) out->set_degraded(out->degraded() + 1);
      same += r.ok == results[0][i].ok && r.page == results[0][i].page;
    }
    out->set_same_pages(same);
    uint64_t seed = options.seed;
    for (size_t m = 0; m < f.names.size(); ++m, ++seed) {
      const std::vector<double> per_user = PerUser(f.per_request[m], truths, num_users);
      const std::vector<double> defined = Defined(per_user);
      SetMetric(out->add_metrics(), f.names[m], MeanWithCi(defined, b, seed),
                int64_t(defined.size()), CountDefined(f.per_request[m]));
      if (v == 0) continue;
      const VariantFigures& base = figures[0];
      auto at = std::find(base.names.begin(), base.names.end(), f.names[m]);
      if (at == base.names.end()) continue;
      AddPairedDelta(
          out, f.names[m],
          PerUser(base.per_request[at - base.names.begin()], truths, num_users), per_user,
          b, seed, &any_few);
    }
    // Per-head AUC and log loss over the labelled items of the pages; their
    // differences paired over users like the others.
    for (const auto& [head, rows] : f.heads) {
      std::set<int32_t> users(rows.users.begin(), rows.users.end());
      const Interval auc =
          AucWithCi(rows.scores, rows.labels, rows.users, int(num_users), b, seed++);
      SetMetric(out->add_metrics(), "auc/" + head, auc, int64_t(users.size()),
                int64_t(rows.scores.size()));
      const std::vector<double> loss = LogLossPerUser(rows, num_users);
      const std::vector<double> defined = Defined(loss);
      SetMetric(out->add_metrics(), "logloss/" + head, MeanWithCi(defined, b, seed++),
                int64_t(defined.size()), int64_t(rows.scores.size()));
      if (v == 0) continue;
      auto base_rows = figures[0].heads.find(head);
      if (base_rows == figures[0].heads.end()) continue;
      const VariantFigures::Rows& a = base_rows->second;
      std::set<int32_t> both;
      for (int32_t u : a.users) {
        if (users.count(u)) both.insert(u);
      }
      AddDelta(
          out, "auc/" + head,
          PairedAucDeltaOverUsers(a.scores, a.labels, a.users, rows.scores, rows.labels,
                                  rows.users, int(num_users), b, seed++),
          int64_t(both.size()), &any_few);
      AddPairedDelta(out, "logloss/" + head, LogLossPerUser(a, num_users), loss, b,
                     seed++, &any_few);
    }
    if (!std::isnan(f.coverage)) {
      SetMetric(out->add_metrics(), "coverage", {f.coverage, f.coverage, f.coverage},
                num_users, int64_t(records.size()));
      if (v > 0 && !std::isnan(figures[0].coverage)) {
        v1::ReplayReport::Delta* delta = out->add_deltas();
        delta->set_name("coverage");
        const double d = f.coverage - figures[0].coverage;
        delta->set_delta(d);
        delta->set_lo(d);
        delta->set_hi(d);
        delta->set_users(num_users);
      }
    }
    if (options.include_latency) {
      out->set_qps(seconds[v] > 0 ? double(records.size()) / seconds[v] : 0);
      auto summary = [&](const std::string& stage, std::vector<double> us) {
        if (us.empty()) return;
        v1::ReplayReport::Latency* l = out->add_latency();
        l->set_stage(stage);
        l->set_p50_us(Percentile(&us, 50));
        l->set_p95_us(Percentile(&us, 95));
        l->set_p99_us(Percentile(&us, 99));
        l->set_max_us(Percentile(&us, 100));
        for (int q = 0; q <= 100; ++q) l->add_percentiles_us(Percentile(&us, q));
      };
      std::vector<double> total;
      std::vector<std::vector<double>> stages(kStages);
      for (const PageResult& r : results[v]) {
        if (!r.ok) continue;
        total.push_back(double(r.total_us));
        if (!r.has_stages) continue;
        for (int s = 0; s < kStages; ++s) stages[s].push_back(double(r.stage_us[s]));
      }
      summary("request", total);
      for (int s = 0; s < kStages; ++s) {
        summary(RankStageName(static_cast<RankStage>(s)), stages[s]);
      }
    }
  }

  // Pages that differ most from the first variant's.
  for (size_t v = 1; v < variants.size() && options.top_diffs > 0; ++v) {
    std::vector<std::pair<double, size_t>> order;
    for (size_t i = 0; i < records.size(); ++i) {
      const std::vector<uint64_t>& a = results[0][i].page;
      const std::vector<uint64_t>& bp = results[v][i].page;
      std::set<uint64_t> sa(a.begin(), a.end()), sb(bp.begin(), bp.end());
      size_t both = 0;
      for (uint64_t id : sa) both += sb.count(id);
      const size_t either = sa.size() + sb.size() - both;
      order.emplace_back(either == 0 ? 1.0 : double(both) / double(either), i);
    }
    std::stable_sort(order.begin(), order.end());
    for (size_t j = 0; j < order.size() && j < size_t(options.top_diffs); ++j) {
      if (order[j].first >= 1.0) break;
      const size_t i = order[j].second;
      v1::ReplayReport::RequestDiff* diff = report.add_top_diffs();
      diff->set_variant(variants[v].name);
      diff->set_request_id(records[i].request().request_id());
      diff->set_user_id(records[i].request().user_id());
      diff->set_jaccard(order[j].first);
      int hits_a = 0, hits_b = 0;
      for (uint64_t id : results[0][i].page) {
        diff->add_base_page(id);
        hits_a += truths[i].relevant.contains(id);
      }
      for (uint64_t id : results[v][i].page) {
        diff->add_variant_page(id);
        hits_b += truths[i].relevant.contains(id);
      }
      diff->set_base_hits(hits_a);
      diff->set_variant_hits(hits_b);
    }
  }

  // Sweep points: one per variant with an override.
  if (options.exact_recall) {
    for (size_t v = 0; v < variants.size(); ++v) {
      const std::string& o = variants[v].sweep_override;
      const size_t eq = o.find('=');
      if (eq == std::string::npos) continue;
      v1::ReplayReport::SweepPoint* point = report.add_sweep();
      point->set_param(o.substr(0, eq));
      int64_t value = 0;
      (void)absl::SimpleAtoi(o.substr(eq + 1), &value);
      point->set_value(value);
      std::vector<double> exact, ann_us;
      for (const PageResult& r : results[v]) {
        if (!std::isnan(r.recall_vs_exact)) exact.push_back(r.recall_vs_exact);
        if (r.ok && r.has_stages) ann_us.push_back(double(r.stage_us[1]));
      }
      double mean = 0;
      for (double x : exact) mean += x;
      point->set_recall_vs_exact(exact.empty() ? std::nan("") : mean / exact.size());
      for (const v1::ReplayReport::Metric& m : report.variants(v).metrics()) {
        if (m.name() == "retrieval_recall/ann") point->set_positive_recall(m.value());
      }
      if (options.include_latency) {
        point->set_ann_p50_us(Percentile(&ann_us, 50));
        point->set_ann_p99_us(Percentile(&ann_us, 99));
      }
    }
  }

  // What the figures can and cannot tell.
  report.add_notes(absl::StrCat(
      "Outcomes are known only for the videos the user was shown when the log was made. "
      "A "
      "video a variant ranks that the user never saw counts as not relevant, so a "
      "variant "
      "whose pages differ from what was shown is measured pessimistically; small "
      "differences "
      "between variants that both differ from the logged pages say little."));
  report.add_notes(absl::StrCat(
      "Ranking metrics (ndcg, recall, hit rate, retrieval recall) rest on the ",
      with_positives, " requests of ", users_with_positives.size(),
      " users with at least one '", positive_name,
      "' outcome; each user counts once (the mean of their requests), and "
      "intervals resample users (95% percentile bootstrap, ",
      b, " resamples, seed ", options.seed,
      "); differences are paired: the same resampled "
      "users for both variants."));
  report.add_notes(
      "AUC and log loss cover only the page items with an observed label for the head: "
      "they judge the model on what was shown, not on what it would show. Coverage is "
      "catalogue-level: no interval.");
  if (any_few || users_with_positives.size() < size_t(kFewUsers)) {
    report.add_notes(absl::StrCat("Warning: some figures rest on fewer than ", kFewUsers,
                                  " users; their intervals are not to be trusted."));
  }
  if (target_mode) {
    report.add_notes(
        "Against servers, pages depend on their deadlines and load: a degraded page is "
        "measured as served. Per-source retrieval recall is not available from a "
        "server.");
  }
  return report;
}

}  // namespace feedrank
