#include "cli/loadgen.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/client.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"

namespace feedrank {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Shared with every call's completion callback, which keeps it alive.
class Driver : public std::enable_shared_from_this<Driver> {
 public:
  Driver(const LoadgenOptions& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options),
        stub_(v1::FeedRanker::NewStub(channel)),
        rng_(options.seed) {}

  LoadgenReport Run() {
    start_ = SteadyClock::now();
    measure_from_ = start_ + ToDuration(options_.warmup_s);
    end_ = measure_from_ + ToDuration(options_.duration_s);
    if (options_.qps > 0) {
      RunOpenLoop();
    } else {
      for (int i = 0; i < options_.concurrency; ++i) Issue(SteadyClock::now());
    }
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Driver* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu_) {
          return d->in_flight_ == 0 && (d->stopped_ || d->options_.qps > 0);
        },
        this));
    return Summarize();
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::RankFeedRequest request;
    v1::RankFeedResponse response;
    SteadyClock::time_point scheduled;
  };

  static SteadyClock::duration ToDuration(double seconds) {
    return std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(seconds));
  }

  bool ShouldStop(SteadyClock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (now >= end_) return true;
    return options_.requests > 0 && started_measured_ >= options_.requests;
  }

  // Starts one call; returns false when the run is over.
  bool Issue(SteadyClock::time_point scheduled) {
    std::unique_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      call = ReserveLocked(scheduled);
    }
    if (call == nullptr) return false;
    Start(std::move(call));
    return true;
  }

  // Counts a call in flight and fills its request; null (and the run marked
  // stopped) when the run is over. While a reserved call is in flight, Run()
  // cannot return, so the Driver outlives Start().
  std::unique_ptr<Call> ReserveLocked(SteadyClock::time_point scheduled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopped_ || ShouldStop(SteadyClock::now())) {
      stopped_ = true;
      return nullptr;
    }
    auto call = std::make_unique<Call>();
    ++in_flight_;
    if (scheduled >= measure_from_) ++started_measured_;
    FillRequest(&call->request);
    call->scheduled = scheduled;
    return call;
  }

  void Start(std::unique_ptr<Call> call) {
    call->context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::milliseconds(options_.deadline_ms));
    Call* raw = call.release();
    stub_->async()->RankFeed(&raw->context, &raw->request, &raw->response,
                             [self = shared_from_this(), raw](grpc::Status status) {
                               self->Done(raw, status);
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

  void Done(Call* call, const grpc::Status& status) {
    const SteadyClock::time_point now = SteadyClock::now();
    const bool open_loop = options_.qps > 0;
    std::unique_ptr<Call> next;
    {
      absl::MutexLock lock(&mu_);
      if (call->scheduled >= measure_from_) {
        if (status.ok()) {
          latencies_ms_.push_back(
              std::chrono::duration<double, std::milli>(now - call->scheduled).count());
          if (call->response.degraded()) ++degraded_;
        } else {
          ++errors_[CodeName(status.error_code())];
        }
      }
      // Closed loop: the next call takes this one's slot before the count
      // can reach zero.
      if (!open_loop) next = ReserveLocked(SteadyClock::now());
      --in_flight_;
    }
    // Once the lock is released with nothing in flight, Run() may return and
    // destroy this Driver: only `next` (which keeps it alive) may use it.
    delete call;
    if (next != nullptr) Start(std::move(next));
  }

  void RunOpenLoop() {
    const SteadyClock::duration interval = ToDuration(1.0 / options_.qps);
    SteadyClock::time_point next = start_;
    while (true) {
      std::this_thread::sleep_until(next);
      {
        absl::MutexLock lock(&mu_);
        if (ShouldStop(next)) {
          stopped_ = true;
          break;
        }
        if (in_flight_ >= options_.concurrency) {
          if (next >= measure_from_) {
            ++started_measured_;
            ++errors_["CLIENT_OVERFLOW"];
          }
          next += interval;
          continue;
        }
      }
      if (!Issue(next)) break;
      next += interval;
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
      auto at = [&](double q) {
        const size_t i = static_cast<size_t>(std::ceil(q * l.size())) - 1;
        return l[std::min(i, l.size() - 1)];
      };
      report.p50 = at(0.50);
      report.p95 = at(0.95);
      report.p99 = at(0.99);
      report.p999 = at(0.999);
      report.max = l.back();
      double sum = 0;
      for (double x : l) sum += x;
      report.mean = sum / l.size();
    }
    return report;
  }

  const LoadgenOptions options_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
  SteadyClock::time_point start_, measure_from_, end_;

  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Calls started (or dropped, open loop) after the warm-up.
  int64_t started_measured_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t degraded_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("target is empty");
  if (options.concurrency < 1 || options.concurrency > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("concurrency: ", options.concurrency, " is outside [1, 100000]"));
  }
  if (options.qps < 0) return absl::InvalidArgumentError("qps must be >= 0");
  if (options.duration_s <= 0 && options.requests <= 0) {
    return absl::InvalidArgumentError("need a positive duration or request count");
  }
  if (options.deadline_ms < 1) return absl::InvalidArgumentError("deadline_ms must be >= 1");
  LoadgenOptions o = options;
  if (o.duration_s <= 0) o.duration_s = 1e9;
  grpc::ChannelArguments args;
  // One connection per loadgen, like one backend client; avoid the channel
  // being shared with another test channel in-process.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  auto channel = grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(),
                                           args);
  absl::Status ready = WaitForServing(channel, kRankerServiceName, absl::Seconds(30));
  if (!ready.ok()) return absl::UnavailableError(ready.message());
  auto driver = std::make_shared<Driver>(o, channel);
  return driver->Run();
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
      r.options.concurrency, r.options.count, r.options.exclude, r.ok + errors, r.ok,
      errors, r.degraded, r.seconds, r.qps, r.p50, r.p95, r.p99, r.p999, r.max, r.mean,
      by_code.empty() ? "none" : absl::StrJoin(by_code, " "));
}

std::string ReportJson(const LoadgenReport& r) {
  std::vector<std::string> codes;
  for (const auto& [code, n] : r.errors) codes.push_back(absl::StrFormat("\"%s\":%d", code, n));
  return absl::StrFormat(
      "{\"target\":\"%s\",\"mode\":\"%s\",\"target_qps\":%.1f,\"concurrency\":%d,"
      "\"ok\":%d,\"degraded\":%d,\"errors\":{%s},\"seconds\":%.3f,\"qps\":%.1f,"
      "\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}",
      r.options.target, r.options.qps > 0 ? "open" : "closed", r.options.qps,
      r.options.concurrency, r.ok, r.degraded, absl::StrJoin(codes, ","), r.seconds,
      r.qps, r.p50, r.p95, r.p99, r.p999, r.max);
}

}  // namespace feedrank
