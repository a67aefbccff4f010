#include "cli/loadgen.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "cli/client.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"

namespace feedrank {
namespace {

using SteadyClock = std::chrono::steady_clock;

// The nearest-rank q-quantile of sorted, non-empty `l`.
double AtQuantile(const std::vector<double>& l, double q) {
  const size_t i = static_cast<size_t>(std::ceil(q * l.size()));
  return l[std::min(l.size(), std::max<size_t>(i, 1)) - 1];
}

// The state of one run.
//
// LIFETIME. gRPC must never be the one to destroy the stub or the channel. A
// grpc::Channel holds a reference on the gRPC library: destroyed inside one
// of gRPC's completion callbacks, it can drop the process's last one and shut
// gRPC down from that thread while gRPC is still using it there (a double
// free in grpc_cq_internal_unref under ASan, heap corruption in release
// builds). So:
//  - The stub and the channel belong to RunLoadgen's frame, never to the
//    Driver, and die there after Run() returns.
//  - Every call is owned by a CallHold, which the completion functor given
//    to gRPC owns. gRPC destroys the functor's last copy after the callback
//    has returned and after its own last use of the call; only then does the
//    hold (after destroying the call's context) count itself out.
//  - A hold is only ever taken by Run()'s thread before it starts waiting, or
//    by a completion whose own hold is still counted. So once Run() sees no
//    hold left, no call of the run exists and none can start: gRPC holds no
//    callback of ours, and the stub and channel may go.
//  - The Driver itself is shared by Run()'s thread and every hold, so it
//    (with its mutex) dies with the last of them, after every thread has left
//    the mutex. It owns no gRPC object, so that may be a gRPC thread.
class Driver : public std::enable_shared_from_this<Driver> {
 public:
  // REQUIRES: `stub` outlives Run().
  Driver(const LoadgenOptions& options, v1::FeedRanker::Stub* stub)
      : options_(options), stub_(stub), rng_(options.seed) {}

  // Runs the load; returns when no call of the run is left. Call once.
  LoadgenReport Run() ABSL_LOCKS_EXCLUDED(mu_) {
    start_ = SteadyClock::now();
    measure_from_ = start_ + ToDuration(options_.warmup_s);
    end_ = measure_from_ + ToDuration(options_.duration_s);
    if (options_.qps > 0) {
      RunOpenLoop();
    } else {
      for (int i = 0; i < options_.concurrency; ++i) {
        if (!Issue(SteadyClock::now())) break;
      }
    }
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Driver* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu_) { return d->holds_ == 0; },
        this));
    stopped_ = true;  // no hold is left to reserve another call; say so
    return Summarize();
  }

  // The figures of the calls completed since the last call of this, with
  // `end_s` the seconds since the start.
  LoadgenInterval TakeInterval() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<double> l;
    LoadgenInterval out;
    {
      absl::MutexLock lock(&mu_);
      l.swap(interval_ms_);
      out = interval_;
      interval_ = LoadgenInterval();
    }
    out.end_s = std::chrono::duration<double>(SteadyClock::now() - start_).count();
    out.ok = int64_t(l.size());
    if (!l.empty()) {
      std::sort(l.begin(), l.end());
      out.p50 = AtQuantile(l, 0.50);
      out.p99 = AtQuantile(l, 0.99);
      out.max = l.back();
    }
    return out;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::RankFeedRequest request;
    v1::RankFeedResponse response;
    SteadyClock::time_point scheduled;
  };

  // Owns one call from its reservation until gRPC lets go of its completion
  // functor; counted in holds_ (by ReserveLocked) for exactly that long.
  // Never destroyed with mu_ held: its destructor takes it.
  class CallHold {
   public:
    CallHold(std::shared_ptr<Driver> driver, std::unique_ptr<Call> call)
        : driver_(std::move(driver)), call_(std::move(call)) {}
    CallHold(const CallHold&) = delete;
    CallHold& operator=(const CallHold&) = delete;
    ~CallHold() {
      call_.reset();  // the context first: no call outlives its hold
      driver_->Release();
    }  // driver_ last: the Driver outlives Release()'s unlock

    Call& call() { return *call_; }
    Driver& driver() { return *driver_; }

   private:
    const std::shared_ptr<Driver> driver_;
    std::unique_ptr<Call> call_;
  };

  static SteadyClock::duration ToDuration(double seconds) {
    return std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(seconds));
  }

  bool ShouldStop(SteadyClock::time_point scheduled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (scheduled >= end_) return true;
    return options_.requests > 0 && started_measured_ >= options_.requests;
  }

  // Reserves and starts one call; false when the run is over.
  bool Issue(SteadyClock::time_point scheduled) ABSL_LOCKS_EXCLUDED(mu_) {
    std::shared_ptr<CallHold> hold;
    {
      absl::MutexLock lock(&mu_);
      hold = ReserveLocked(scheduled);
    }
    if (hold == nullptr) return false;
    Start(std::move(hold));
    return true;
  }

  // Counts a call in flight, fills its request and takes its hold; null (and
  // the run marked stopped) when the run is over. The caller must release mu_
  // before it lets go of the hold.
  std::shared_ptr<CallHold> ReserveLocked(SteadyClock::time_point scheduled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopped_ || ShouldStop(scheduled)) {
      stopped_ = true;
      return nullptr;
    }
    auto call = std::make_unique<Call>();
    ++in_flight_;
    if (scheduled >= measure_from_) ++started_measured_;
    FillRequest(&call->request);
    call->scheduled = scheduled;
    ++holds_;  // given back by ~CallHold
    return std::make_shared<CallHold>(shared_from_this(), std::move(call));
  }

  // Hands the call to gRPC. The functor owns the hold; std::function copies
  // share it, so it dies with the copy gRPC destroys last.
  void Start(std::shared_ptr<CallHold> hold) ABSL_LOCKS_EXCLUDED(mu_) {
    Call& call = hold->call();
    call.context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::milliseconds(options_.deadline_ms));
    stub_->async()->RankFeed(&call.context, &call.request, &call.response,
                             [hold = std::move(hold)](grpc::Status status) {
                               hold->driver().Done(hold->call(), status);
                             });
  }

  void FillRequest(v1::RankFeedRequest* request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uniform_real_distribution<double> unit(0, 1);
    if (options_.users.empty() || unit(rng_) < options_.cold_fraction) {
      request->set_user_id((uint64_t{1} << 62) + (rng_() >> 3));
    } else {
      request->set_user_id(options_.users[rng_() % options_.users.size()]);
    }
    request->set_count(options_.count);
    for (int i = 0; i < options_.exclude; ++i) {
      request->add_exclude_ids(options_.videos.empty()
                                   ? rng_()
                                   : options_.videos[rng_() % options_.videos.size()]);
    }
  }

  // The completion of `call` (whose hold is still counted).
  void Done(const Call& call, const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    const SteadyClock::time_point now = SteadyClock::now();
    std::shared_ptr<CallHold> next;
    {
      absl::MutexLock lock(&mu_);
      const double ms =
          std::chrono::duration<double, std::milli>(now - call.scheduled).count();
      if (status.ok()) {
        interval_ms_.push_back(ms);
        if (call.response.degraded()) ++interval_.degraded;
      } else {
        ++interval_.errors;
      }
      if (call.scheduled >= measure_from_) {
        if (status.ok()) {
          latencies_ms_.push_back(
              std::chrono::duration<double, std::milli>(now - call.scheduled).count());
          if (call.response.degraded()) ++degraded_;
        } else {
          ++errors_[CodeName(status.error_code())];
        }
      }
      --in_flight_;
      // Closed loop: the next call takes this one's slot.
      if (options_.qps == 0) next = ReserveLocked(SteadyClock::now());
    }
    if (next != nullptr) Start(std::move(next));
  }

  // The last use of the Driver by a hold, whose count it gives back.
  void Release() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --holds_;
  }

  // Call n is scheduled at start + n / qps (no drift from rounding the
  // interval); a call whose time comes while `concurrency` calls are in
  // flight is not sent and counts as CLIENT_OVERFLOW.
  void RunOpenLoop() ABSL_LOCKS_EXCLUDED(mu_) {
    for (int64_t n = 0;; ++n) {
      const SteadyClock::time_point scheduled = start_ + ToDuration(n / options_.qps);
      // A call due after the end stops the run (ReserveLocked): no waiting.
      if (scheduled < end_) std::this_thread::sleep_until(scheduled);
      std::shared_ptr<CallHold> hold;
      {
        absl::MutexLock lock(&mu_);
        if (in_flight_ >= options_.concurrency && !ShouldStop(scheduled)) {
          if (scheduled >= measure_from_) {
            ++started_measured_;
            ++errors_["CLIENT_OVERFLOW"];
          }
          continue;
        }
        hold = ReserveLocked(scheduled);
      }
      if (hold == nullptr) return;
      Start(std::move(hold));
    }
  }

  LoadgenReport Summarize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    LoadgenReport report;
    report.options = options_;
    report.ok = static_cast<int64_t>(latencies_ms_.size());
    report.degraded = degraded_;
    report.errors = errors_;
    const SteadyClock::time_point stop = std::min(SteadyClock::now(), end_);
    report.seconds = std::chrono::duration<double>(stop - measure_from_).count();
    report.qps = report.seconds > 0 ? report.ok / report.seconds : 0;
    std::vector<double> l = latencies_ms_;
    if (!l.empty()) {
      std::sort(l.begin(), l.end());
      report.p50 = AtQuantile(l, 0.50);
      report.p95 = AtQuantile(l, 0.95);
      report.p99 = AtQuantile(l, 0.99);
      report.p999 = AtQuantile(l, 0.999);
      report.max = l.back();
      double sum = 0;
      for (double x : l) sum += x;
      report.mean = sum / l.size();
    }
    return report;
  }

  const LoadgenOptions options_;
  v1::FeedRanker::Stub* const stub_;  // not owned; see LIFETIME
  // Written by Run() before the first call starts; read-only after.
  SteadyClock::time_point start_, measure_from_, end_;

  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Calls sent and not yet completed (the open-loop cap).
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Live CallHolds: calls gRPC may still hold a callback of. >= in_flight_.
  int holds_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Calls started (or dropped, open loop) after the warm-up.
  int64_t started_measured_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t degraded_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  // The current interval (TakeInterval).
  std::vector<double> interval_ms_ ABSL_GUARDED_BY(mu_);
  LoadgenInterval interval_ ABSL_GUARDED_BY(mu_);
};

// Each bound on a number of seconds keeps every time point of a run far from
// the clock's range; the qps floor keeps the gap between calls within it.
absl::Status Validate(const LoadgenOptions& o) {
  if (o.target.empty()) return absl::InvalidArgumentError("target is empty");
  auto in_range = [](const char* field, auto value, auto lo, auto hi) {
    // Written so that NaN fails.
    if (value >= lo && value <= hi) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value, " is outside [", lo, ", ", hi, "]"));
  };
  RETURN_IF_ERROR(in_range("concurrency", o.concurrency, 1, 100000));
  if (o.qps != 0 && !(o.qps >= 0.001 && o.qps <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrCat("qps: ", o.qps, " is neither 0 (closed loop) nor in [0.001, 1e6]"));
  }
  if (o.requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("requests: ", o.requests, " is negative"));
  }
  RETURN_IF_ERROR(in_range("duration_s", o.duration_s, 0.0, 1e6));
  if (o.duration_s == 0 && o.requests == 0) {
    return absl::InvalidArgumentError(
        "duration_s and requests are both 0 (no limit): the run would never end");
  }
  RETURN_IF_ERROR(in_range("warmup_s", o.warmup_s, 0.0, 1e6));
  RETURN_IF_ERROR(in_range("count", o.count, 0, 1000000));
  if (o.interval_s != 0) RETURN_IF_ERROR(in_range("interval_s", o.interval_s, 0.1, 1e6));
  if (o.upsert_ids != 0) {
    RETURN_IF_ERROR(
        in_range("upsert_ids", o.upsert_ids, int64_t{1}, int64_t{1000000000}));
  }
  RETURN_IF_ERROR(in_range("exclude", o.exclude, 0, 1000000));
  RETURN_IF_ERROR(in_range("deadline_ms", o.deadline_ms, 1, 3600000));
  RETURN_IF_ERROR(in_range("cold_fraction", o.cold_fraction, 0.0, 1.0));
  if (!(o.serving_timeout_s > 0 && o.serving_timeout_s <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrCat("serving_timeout_s: ", o.serving_timeout_s, " is outside (0, 1e6]"));
  }
  RETURN_IF_ERROR(in_range("upserts_per_second", o.upserts_per_second, 0.0, 1e6));
  if (o.upserts_per_second > 0) {
    if (o.admin_target.empty()) {
      return absl::InvalidArgumentError("upserts_per_second needs admin_target");
    }
    RETURN_IF_ERROR(in_range("upsert_batch", o.upsert_batch, 1, 10000));
    RETURN_IF_ERROR(in_range("upsert_dim", o.upsert_dim, 1, 65536));
  }
  return absl::OkStatus();
}

// The live-update stream of a run, on its own thread and channel.
class UpsertStream {
 public:
  explicit UpsertStream(const LoadgenOptions& o) : o_(o) {
    thread_ = std::thread([this] { Run(); });
  }
  // Stops after the call in flight; fills the report's upsert fields.
  void Finish(LoadgenReport* report) {
    stop_ = true;
    thread_.join();
    report->upserted = upserted_;
    report->upsert_errors = errors_;
    report->upsert_rate = seconds_ > 0 ? upserted_ / seconds_ : 0;
    std::sort(latencies_.begin(), latencies_.end());
    auto at = [&](double q) {
      return latencies_.empty() ? 0.0
                                : latencies_[std::min(latencies_.size() - 1,
                                                      size_t(q * latencies_.size()))];
    };
    report->upsert_p50 = at(0.5);
    report->upsert_p99 = at(0.99);
  }

 private:
  void Run() {
    auto channel = MakeChannel(o_.admin_target, o_.tls);
    if (!channel.ok()) {  // the same files opened the main channel: unlikely
      ++errors_;
      return;
    }
    auto stub = v1::FeedAdmin::NewStub(*channel);
    std::mt19937_64 rng(o_.seed ^ 0x5eed);
    std::normal_distribution<float> normal;
    const auto start = SteadyClock::now();
    const double per_batch_s = o_.upsert_batch / o_.upserts_per_second;
    const uint64_t first_id = 7000000000000ull + (o_.seed % 1000) * 1000000000ull;
    uint64_t sent = 0;
    for (int64_t k = 0; !stop_; ++k) {
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<SteadyClock::duration>(
                                        std::chrono::duration<double>(k * per_batch_s)));
      if (stop_) break;
      v1::UpsertVideosRequest request;
      for (int i = 0; i < o_.upsert_batch; ++i) {
        v1::VideoUpdate* v = request.add_videos();
        v->set_id(first_id + (o_.upsert_ids > 0 ? sent % uint64_t(o_.upsert_ids) : sent));
        ++sent;
        double norm = 0;
        std::vector<float> e(o_.upsert_dim);
        for (float& x : e) {
          x = normal(rng);
          norm += double(x) * x;
        }
        for (float x : e) v->add_embedding(float(x / std::sqrt(norm)));
        v->set_creator_id(rng() % 100000);
        v->set_duration_ms(5000 + rng() % 60000);
        v->set_popularity(float(rng() % 1000));
      }
      v1::UpdateResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      const auto sent = SteadyClock::now();
      const grpc::Status status = stub->UpsertVideos(&context, request, &response);
      const double ms =
          std::chrono::duration<double, std::milli>(SteadyClock::now() - sent).count();
      if (status.ok()) {
        upserted_ += o_.upsert_batch;
        latencies_.push_back(ms);
      } else {
        ++errors_;
      }
    }
    seconds_ = std::chrono::duration<double>(SteadyClock::now() - start).count();
  }

  const LoadgenOptions o_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Written by the stream's thread, read after the join.
  int64_t upserted_ = 0;
  int64_t errors_ = 0;
  double seconds_ = 0;
  std::vector<double> latencies_;
};

}  // namespace

absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options) {
  RETURN_IF_ERROR(Validate(options));
  LoadgenOptions o = options;
  if (o.duration_s == 0) o.duration_s = 1e9;  // requests > 0 ends the run
  grpc::ChannelArguments args;
  // One connection per loadgen, like one backend client; avoid the channel
  // being shared with another test channel in-process.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  // Declared before the Driver runs, so destroyed here after it: see LIFETIME.
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(o.target, o.tls, args));
  absl::Status ready =
      WaitForServing(channel, kRankerServiceName, absl::Seconds(o.serving_timeout_s));
  if (!ready.ok()) return absl::UnavailableError(ready.message());
  const std::unique_ptr<v1::FeedRanker::Stub> stub = v1::FeedRanker::NewStub(channel);
  std::unique_ptr<UpsertStream> upserts;
  if (o.upserts_per_second > 0) upserts = std::make_unique<UpsertStream>(o);
  auto driver = std::make_shared<Driver>(o, stub.get());
  // The interval reporter: wakes every interval_s until the run is over.
  std::vector<LoadgenInterval> intervals;
  absl::Mutex reporter_mu;
  bool run_over = false;
  std::thread reporter;
  if (o.interval_s > 0) {
    reporter = std::thread([&] {
      const auto start = SteadyClock::now();
      for (int64_t k = 1;; ++k) {
        // Ticks at start + k * interval_s: no drift from the time each takes.
        const auto due = start + std::chrono::duration_cast<SteadyClock::duration>(
                                     std::chrono::duration<double>(k * o.interval_s));
        {
          absl::MutexLock lock(&reporter_mu);
          if (reporter_mu.AwaitWithTimeout(absl::Condition(&run_over),
                                           absl::FromChrono(due - SteadyClock::now())))
            return;
        }
        LoadgenInterval interval = driver->TakeInterval();
        if (o.on_interval) o.on_interval(interval);
        intervals.push_back(interval);
      }
    });
  }
  LoadgenReport report = driver->Run();
  if (reporter.joinable()) {
    {
      absl::MutexLock lock(&reporter_mu);
      run_over = true;
    }
    reporter.join();
    // The calls completed since the last tick: a last, shorter interval.
    LoadgenInterval last = driver->TakeInterval();
    if (last.ok + last.errors > 0) {
      if (o.on_interval) o.on_interval(last);
      intervals.push_back(last);
    }
  }
  driver.reset();
  report.intervals = std::move(intervals);
  if (upserts != nullptr) upserts->Finish(&report);
  return report;
}

std::string FormatInterval(const LoadgenInterval& i, bool json) {
  if (json) {
    return absl::StrFormat(
        "{\"interval_end_s\":%.3f,\"ok\":%d,\"errors\":%d,\"degraded\":%d,"
        "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}",
        i.end_s, i.ok, i.errors, i.degraded, i.p50, i.p99, i.max);
  }
  return absl::StrFormat(
      "interval to %7.1fs  ok %d  errors %d  degraded %d  p50 %.3f  p99 %.3f  max %.3f "
      "ms",
      i.end_s, i.ok, i.errors, i.degraded, i.p50, i.p99, i.max);
}

std::string FormatReport(const LoadgenReport& r) {
  int64_t errors = 0;
  std::vector<std::string> by_code;
  for (const auto& [code, n] : r.errors) {
    errors += n;
    by_code.push_back(absl::StrCat(code, "=", n));
  }
  return absl::StrFormat(
             "target %s  %s  concurrency %d  count %d  exclude %d\n"
             "requests %d  ok %d  errors %d  degraded %d  over %.1fs  =>  %.0f QPS\n"
             "latency ms  p50 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n"
             "errors by code: %s\n",
             r.options.target,
             r.options.qps > 0 ? absl::StrFormat("open loop %.0f QPS", r.options.qps)
                               : std::string("closed loop"),
             r.options.concurrency, r.options.count, r.options.exclude, r.ok + errors,
             r.ok, errors, r.degraded, r.seconds, r.qps, r.p50, r.p95, r.p99, r.p999,
             r.max, r.mean, by_code.empty() ? "none" : absl::StrJoin(by_code, " ")) +
         (r.options.upserts_per_second > 0
              ? absl::StrFormat(
                    "live upserts: %d videos acknowledged (%.0f/s of %.0f asked, batches "
                    "of %d), %d batches refused; ack latency ms p50 %.3f p99 %.3f\n",
                    r.upserted, r.upsert_rate, r.options.upserts_per_second,
                    r.options.upsert_batch, r.upsert_errors, r.upsert_p50, r.upsert_p99)
              : std::string());
}

std::string ReportJson(const LoadgenReport& r) {
  std::vector<std::string> codes;
  for (const auto& [code, n] : r.errors)
    codes.push_back(absl::StrFormat("\"%s\":%d", code, n));
  return absl::StrFormat(
      "{\"target\":\"%s\",\"mode\":\"%s\",\"target_qps\":%.1f,\"concurrency\":%d,"
      "\"ok\":%d,\"degraded\":%d,\"errors\":{%s},\"seconds\":%.3f,\"qps\":%.1f,"
      "\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
      "\"upserted\":%d,\"upsert_errors\":%d,\"upsert_rate\":%.1f,"
      "\"upsert_p50_ms\":%.3f,\"upsert_p99_ms\":%.3f}",
      r.options.target, r.options.qps > 0 ? "open" : "closed", r.options.qps,
      r.options.concurrency, r.ok, r.degraded, absl::StrJoin(codes, ","), r.seconds,
      r.qps, r.p50, r.p95, r.p99, r.p999, r.max, r.upserted, r.upsert_errors,
      r.upsert_rate, r.upsert_p50, r.upsert_p99);
}

}  // namespace feedrank
