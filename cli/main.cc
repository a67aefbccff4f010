// feedrank: one binary, one subcommand per job. `feedrank <command> --help`
// describes each.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/npy.h"
#include "cli/admin_cmd.h"
#include "cli/build_bundle.h"
#include "cli/client.h"
#include "cli/loadgen.h"
#include "cli/replay_cmd.h"
#include "cli/synth.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
#include "training/replay_join.h"
#include "training/trainer.h"

namespace feedrank {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

void AddIndexFlags(CLI::App* cmd, IndexSpec* spec, std::string* type, int* threads) {
  cmd->add_option("--threads", *threads,
                  "Index build threads (0 = every core; 1 = reproducible bytes)")
      ->capture_default_str();
  cmd->add_option("--index", *type, "Index type: hnsw (default), ivf or flat (exact)")
      ->check(CLI::IsMember({"hnsw", "ivf", "flat"}));
  cmd->add_option_function<uint32_t>(
      "--hnsw-m", [spec](uint32_t v) { spec->set_hnsw_m(v); },
      "HNSW links per node (default 32)");
  cmd->add_option_function<uint32_t>(
      "--ef-construction", [spec](uint32_t v) { spec->set_hnsw_ef_construction(v); },
      "HNSW build beam width (default 80)");
  cmd->add_option_function<uint32_t>(
      "--beam-width", [spec](uint32_t v) { spec->set_beam_width(v); },
      "HNSW default search beam width, efSearch (default 256)");
  cmd->add_option_function<uint32_t>(
      "--nlist", [spec](uint32_t v) { spec->set_ivf_nlist(v); },
      "IVF lists (default 4*sqrt(videos))");
  cmd->add_option_function<uint32_t>(
      "--nprobe", [spec](uint32_t v) { spec->set_ivf_nprobe(v); },
      "IVF default lists probed (default nlist/16)");
  cmd->add_option_function<std::string>(
         "--scan-codes", [spec](const std::string& v) { spec->set_scan_codes(v); },
         "IVF: scan the lists in float (default) or bf16 (rescored in float)")
      ->check(CLI::IsMember({"float", "bf16"}));
}

// The write end of the pipe that SIGINT, SIGTERM and SIGHUP are forwarded
// through: the handler only writes the signal's number (async-signal-safe).
int g_signal_pipe_write = -1;

extern "C" void ForwardSignal(int signal_number) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe_write, &byte, 1);
  errno = saved_errno;
}

int RunServe(const ServerOptions& options) {
  // SIGINT, SIGTERM and SIGHUP go through a handler that writes to a pipe,
  // read by a thread of its own. A handler, not sigwait on a blocked mask:
  // threads started before main (OpenBLAS starts its pool when libblas is
  // loaded) never inherit a mask set here, and a signal they take would
  // kill the process without a drain. A stop interrupts a bundle load in
  // progress; SIGHUP reloads the config and looks for a newer bundle version.
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Fail(absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno))));
  }
  g_signal_pipe_write = pipe_fds[1];
  struct sigaction action = {};
  action.sa_handler = ForwardSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &action, nullptr);
  auto server = FeedServer::Start(options);
  if (!server.ok()) return Fail(server.status());
  FeedServer* running = server->get();
  std::atomic<bool> stopping{false};
  // SIGHUP reloads on a thread of its own, so that a SIGTERM during a long
  // reload (a large new bundle version) is taken at once: the stop
  // interrupts the load. SIGHUPs during a reload fold into one more after it.
  std::mutex reload_mu;
  std::condition_variable reload_cv;
  bool reload_wanted = false, reload_quit = false;
  std::thread reloader([&] {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(reload_mu);
        reload_cv.wait(lock, [&] { return reload_wanted || reload_quit; });
        if (reload_quit) return;
        reload_wanted = false;
      }
      absl::Status reloaded = running->Reload();
      if (reloaded.ok()) LogInfo("reload done");
    }
  });
  auto stop_reloader = [&] {
    {
      std::lock_guard<std::mutex> lock(reload_mu);
      reload_quit = true;
    }
    reload_cv.notify_all();
    reloader.join();
  };
  std::thread stopper([&] {
    while (true) {
      unsigned char byte = 0;
      const ssize_t n = ::read(pipe_fds[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      const int signal_number = n == 1 ? byte : SIGTERM;
      if (signal_number == SIGHUP) {
        if (stopping.load()) continue;
        LogInfo("received SIGHUP: reloading");
        {
          std::lock_guard<std::mutex> lock(reload_mu);
          reload_wanted = true;
        }
        reload_cv.notify_all();
        continue;
      }
      stopping.store(true);
      if (signal_number == 0) {
        LogInfo("stopping: the bundle did not load");
      } else {
        LogInfo("received %s", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
      }
      running->Shutdown();  // interrupts a reload in progress
      stop_reloader();
      return;
    }
  });
  absl::Status loaded = running->Load();
  if (!loaded.ok() && !stopping.load()) {
    // Wake the stopper thread so that it shuts the server down and exits.
    const unsigned char stop = 0;
    [[maybe_unused]] ssize_t n = ::write(pipe_fds[1], &stop, 1);
    stopper.join();
    return Fail(loaded);
  }
  stopper.join();
  if (!loaded.ok()) LogInfo("stopped before the bundle finished loading");
  return 0;
}

// A duration flag: a number with a unit ("300ms", "5s", "2m"), finite,
// within [lo, hi].
CLI::Option* AddDuration(CLI::App* cmd, const std::string& name, absl::Duration* out,
                         const std::string& help,
                         absl::Duration lo = absl::ZeroDuration(),
                         absl::Duration hi = absl::Hours(24)) {
  return cmd
      ->add_option_function<std::string>(
          name,
          [out, name, lo, hi](const std::string& text) {
            absl::Duration d;
            if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration() ||
                d == -absl::InfiniteDuration()) {
              throw CLI::ValidationError(
                  name, "'" + text +
                            "' is not a duration with a unit, e.g. 500ms, "
                            "5s, 2m");
            }
            if (d < lo || d > hi) {
              throw CLI::ValidationError(name, "'" + text + "' is outside [" +
                                                   absl::FormatDuration(lo) + ", " +
                                                   absl::FormatDuration(hi) + "]");
            }
            *out = d;
          },
          help + " (a duration, e.g. 500ms, 5s; default " + absl::FormatDuration(*out) +
              ")")
      ->type_name("DURATION");
}

// A client's TLS flags (cli/client.h ClientTls).
void AddClientTls(CLI::App* cmd, ClientTls* tls) {
  cmd->add_option("--tls-ca-file", tls->ca_file,
                  "PEM CA certificates that signed the server's certificate: connect "
                  "with TLS (default: plaintext)");
  cmd->add_option("--tls-cert-file", tls->cert_file,
                  "PEM client certificate, for a server that requires one (mutual TLS)");
  cmd->add_option("--tls-key-file", tls->key_file, "PEM private key of --tls-cert-file");
  cmd->add_option(
      "--tls-server-name", tls->server_name,
      "Name to verify in the server's certificate (default: the target's host)");
}

struct QueryFlags {
  std::string target = "localhost:50051";
  ClientTls tls;
  std::vector<uint64_t> users;
  std::string bundle;
  int sample_users = 0;
  int64_t client_time_ms = 0;
  bool bundle_time = false;
  int count = 10;
  std::vector<uint64_t> exclude;
  bool debug = false;
  absl::Duration wait = absl::Seconds(30);
  absl::Duration deadline = absl::Seconds(1);
};

int RunQuery(const QueryFlags& flags) {
  auto made = MakeChannel(flags.target, flags.tls);
  if (!made.ok()) return Fail(made.status());
  std::shared_ptr<grpc::Channel> channel = *std::move(made);
  if (flags.wait > absl::ZeroDuration()) {
    absl::Status ready = WaitForServing(channel, kRankerServiceName, flags.wait);
    if (!ready.ok()) return Fail(ready);
  }
  auto stub = v1::FeedRanker::NewStub(channel);
  int failures = 0;
  for (uint64_t user : flags.users) {
    v1::RankFeedRequest request;
    request.set_user_id(user);
    request.set_count(flags.count);
    request.set_debug(flags.debug);
    request.set_request_id(absl::StrCat("query-", user));
    request.mutable_context()->set_client_time_ms(flags.client_time_ms);
    for (uint64_t id : flags.exclude) request.add_exclude_ids(id);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(flags.deadline));
    grpc::Status status = stub->RankFeed(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "user %llu: %s: %s\n", static_cast<unsigned long long>(user),
                   CodeName(status.error_code()).c_str(), status.error_message().c_str());
      ++failures;
      continue;
    }
    std::cout << FormatFeed(request, response) << "\n";
  }
  return failures == 0 ? 0 : 1;
}

absl::StatusOr<std::vector<uint32_t>> ParseWidths(const std::string& text) {
  std::vector<uint32_t> widths;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    uint32_t width;
    if (!absl::SimpleAtoi(part, &width) || width == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--hidden: '", part, "' is not a positive width"));
    }
    widths.push_back(width);
  }
  return widths;
}

absl::StatusOr<std::vector<uint64_t>> ReadIds(const std::string& dir, const char* file) {
  auto ids = ReadNpy<uint64_t>(BundlePath(dir, file), 1);
  if (!ids.ok()) return ids.status();
  return std::move(ids->data);
}

}  // namespace
}  // namespace feedrank

int main(int argc, char** argv) {
  using namespace feedrank;
  CLI::App app{
      "feedrank: short-video feed ranking (ANN retrieval + multi-task scoring) over "
      "gRPC"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("feedrank ") + FEEDRANK_VERSION);

  // synth
  SynthOptions synth;
  std::string synth_out, synth_index_type;
  std::string synth_hidden = "128,64";
  auto* synth_cmd = app.add_subcommand(
      "synth", "Write a synthetic but realistic bundle (deterministic for a seed)");
  synth_cmd->add_option("--videos", synth.videos, "Videos in the catalogue")->required();
  synth_cmd->add_option("--users", synth.users, "Users with embeddings")->required();
  synth_cmd->add_option("--dim", synth.dim, "Embedding dimension")->capture_default_str();
  synth_cmd->add_option("--seed", synth.seed, "Random seed")->capture_default_str();
  synth_cmd->add_option("--clusters", synth.clusters, "Topic clusters (0 = auto)");
  synth_cmd
      ->add_option("--distribution", synth.distribution,
                   "Embeddings: topics (well-separated, easy for IVF) or hard (2,000 "
                   "overlapping clusters with log-normal norms; cli/synth.h)")
      ->check(CLI::IsMember({"topics", "hard"}))
      ->capture_default_str();
  synth_cmd->add_option("--hidden", synth_hidden, "Hidden layer widths, comma-separated")
      ->capture_default_str();
  synth_cmd->add_option("--version", synth.version, "Bundle version string");
  synth_cmd->add_option("--out", synth_out, "Output bundle directory (must not exist)")
      ->required();
  AddIndexFlags(synth_cmd, &synth.index, &synth_index_type, &synth.threads);

  // build
  BuildOptions build;
  std::string build_index_type;
  auto* build_cmd = app.add_subcommand(
      "build", "Build the index of a bundle source (manifest, .npy columns, model/)");
  build_cmd->add_option("--from", build.from, "Bundle source directory")->required();
  build_cmd->add_option("--out", build.out, "Output bundle directory (must not exist)")
      ->required();
  build_cmd->add_option("--version", build.version, "New bundle version string");
  AddIndexFlags(build_cmd, &build.index, &build_index_type, &build.threads);

  // train
  TrainOptions train;
  std::string train_mapping, train_hidden = "64,32", train_report, train_eval_config;
  bool train_no_eval = false;
  auto* train_cmd = app.add_subcommand(
      "train", "Train a bundle from an interaction log (CSV/TSV + column mapping)");
  train_cmd
      ->add_option("--log", train.log_path, "Interaction log (CSV or TSV with a header)")
      ->required();
  train_cmd
      ->add_option("--mapping", train_mapping,
                   "Column mapping, textproto feedrank.v1.LogMapping")
      ->required();
  train_cmd->add_option("--out", train.out, "Output bundle directory (must not exist)")
      ->required();
  train_cmd->add_option("--replay-out", train.replay_out,
                        "Write the held-out days as a replay log (binary; JSON lines "
                        "when the name ends in .jsonl)");
  train_cmd->add_option("--report", train_report, "Write the quality report (markdown)");
  train_cmd->add_option("--holdout-days", train.holdout_days, "Last days held out")
      ->capture_default_str();
  train_cmd
      ->add_option("--embedding", train.embeddings.method,
                   "Retrieval embeddings: bpr or als")
      ->check(CLI::IsMember({"als", "bpr"}))
      ->capture_default_str();
  train_cmd->add_option("--dim", train.embeddings.dim, "Embedding dimension")
      ->capture_default_str();
  train_cmd
      ->add_option("--embedding-epochs", train.embeddings.epochs,
                   "ALS/BPR epochs (0 = ALS 15, BPR 100)")
      ->capture_default_str();
  train_cmd->add_option("--reg", train.embeddings.reg,
                        "Embedding L2 regularisation (default ALS 0.1, BPR 0.01)");
  train_cmd->add_option("--alpha", train.embeddings.alpha, "ALS confidence weight")
      ->capture_default_str();
  train_cmd
      ->add_option("--bpr-learning-rate", train.embeddings.learning_rate, "BPR SGD step")
      ->capture_default_str();
  train_cmd->add_option("--epochs", train.mlp.epochs, "Model epochs")
      ->capture_default_str();
  train_cmd->add_option("--hidden", train_hidden, "Model hidden widths, comma-separated")
      ->capture_default_str();
  train_cmd->add_option("--batch-size", train.mlp.batch_size, "Model minibatch")
      ->capture_default_str();
  train_cmd->add_option("--learning-rate", train.mlp.learning_rate, "Adam step")
      ->capture_default_str();
  train_cmd
      ->add_option("--folds", train.folds, "Cross-fitting folds for the model's rows")
      ->capture_default_str();
  train_cmd
      ->add_option("--negatives", train.negatives_per_row,
                   "Sampled non-interacted items per training row")
      ->capture_default_str();
  train_cmd
      ->add_option("--engage-objective", train.engage_objective,
                   "Extra head trained on logged vs sampled rows (\"\" = sampled rows "
                   "are negatives of every binary objective instead)")
      ->capture_default_str();
  train_cmd
      ->add_option("--utc-offset-minutes", train.utc_offset_minutes,
                   "The log's users' offset from UTC (local-hour feature)")
      ->capture_default_str();
  train_cmd
      ->add_option("--index", train.index_type,
                   "Index type: auto (flat below 100k items, else hnsw), hnsw, ivf, flat")
      ->check(CLI::IsMember({"auto", "hnsw", "ivf", "flat"}))
      ->capture_default_str();
  train_cmd->add_option("--version", train.version, "Bundle version string");
  train_cmd->add_option("--eval-config", train_eval_config,
                        "Ranking config for the final-ranking metrics (default: weight 1 "
                        "on the retrieval objective)");
  train_cmd->add_option("--resamples", train.resamples, "Bootstrap resamples")
      ->capture_default_str();
  train_cmd->add_flag("--no-eval", train_no_eval, "Skip the held-out evaluation");
  train_cmd
      ->add_option(
          "--validation-days", train.validation_days,
          "Last training days the baselines are tuned on (never the held-out days)")
      ->check(CLI::Range(1, 30))
      ->capture_default_str();
  train_cmd
      ->add_option("--min-eval-users", train.min_eval_users,
                   "Warn when the evaluation rests on fewer users (fail with --strict)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train_cmd->add_flag("--strict", train.strict,
                      "Fail (exit 1) when the evaluation rests on too few users");
  train_cmd
      ->add_option(
          "--split", train.split,
          "Held-out rows: time (the last --holdout-days UTC days; headline "
          "figures) or last-n-per-user (each user's last --last-n rows; "
          "personalisation comparisons only: other users' rows then extend past a "
          "user's held-out time)")
      ->check(CLI::IsMember({"time", "last-n-per-user"}))
      ->capture_default_str();
  train_cmd
      ->add_option("--last-n", train.last_n, "Rows per user held out by last-n-per-user")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  train_cmd->add_flag("!--no-tune-weights", train.tune_weights,
                      "Keep the default value weights (engage 1, like 1) instead of "
                      "choosing them on the validation split");
  train_cmd->add_flag("--ablations", train.ablations,
                      "Also retrain without the trending and the history features and "
                      "report each against the full model (about 3x the time)");
  train_cmd->add_option("--seed", train.seed, "Random seed")->capture_default_str();

  // serve
  ServerOptions serve;
  serve.drain_grace = absl::Seconds(5);
  std::string log_level = "info", log_format = "text";
  bool no_reflection = false;
  auto* serve_cmd = app.add_subcommand("serve", "Serve RankFeed over gRPC");
  auto* bundle_flag =
      serve_cmd->add_option("--bundle", serve.bundle_dir, "One fixed bundle directory");
  auto* root_flag = serve_cmd->add_option(
      "--bundle-root", serve.bundle_root,
      "Directory of numbered bundle versions (1/, 2/, ...): the highest valid one is "
      "served, and a newer one is picked up while running");
  bundle_flag->excludes(root_flag);
  serve_cmd->add_option("--address", serve.address, "host:port to listen on (gRPC)")
      ->capture_default_str();
  serve_cmd->add_option(
      "--config", serve.config_path,
      "Ranking config (textproto RankingConfig), watched for changes and "
      "re-read on SIGHUP; default: built-in defaults");
  serve_cmd->add_option(
      "--metrics-address", serve.metrics_address,
      "host:port of the HTTP endpoint: /metrics (Prometheus), /healthz, /readyz "
      "(default: none)");
  serve_cmd
      ->add_option("--max-request-bytes", serve.max_request_bytes,
                   "Larger RankFeed requests get RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  serve_cmd
      ->add_option("--workers", serve.workers,
                   "Ranking threads (0 = one per hardware thread)")
      ->check(CLI::Range(0, WorkerPool::kMaxThreads))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-queue", serve.max_queue,
                   "Calls that may wait for a ranking thread before UNAVAILABLE "
                   "(0 = 64 per thread)")
      ->check(CLI::Range(0, WorkerPool::kMaxQueue))
      ->capture_default_str();
  AddDuration(
      serve_cmd, "--drain-grace", &serve.drain_grace,
      "Time readiness says NOT_SERVING, calls still answered, before calls are refused "
      "on shutdown",
      absl::ZeroDuration(), absl::Hours(1));
  AddDuration(serve_cmd, "--drain-timeout", &serve.drain_timeout,
              "Time in-flight calls get to finish on shutdown", absl::ZeroDuration(),
              absl::Hours(1));
  AddDuration(
      serve_cmd, "--watch-interval", &serve.watch_interval,
      "How often the config file and the bundle root are checked (0 = never; SIGHUP "
      "still reloads)");
  serve_cmd->add_option("--access-log", serve.access_log.path,
                        "Access log file (JSON lines; '-' = stderr; default: none)");
  serve_cmd
      ->add_option("--access-log-sample", serve.access_log.sample_rate,
                   "Share of successful calls logged (failed ones always, up to "
                   "--access-log-errors per second)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  serve_cmd
      ->add_option("--access-log-errors", serve.access_log.max_error_lines_per_second,
                   "Failed calls logged per second at most")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  serve_cmd->add_option("--log-level", log_level, "debug, info, warning or error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}))
      ->capture_default_str();
  serve_cmd->add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-concurrent-streams", serve.limits.max_concurrent_streams,
                   "Concurrent calls per client connection")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  AddDuration(serve_cmd, "--max-connection-idle", &serve.limits.max_idle,
              "A connection without calls for this long is closed", absl::Seconds(1),
              absl::Hours(24 * 365));
  AddDuration(serve_cmd, "--max-connection-age", &serve.limits.max_age,
              "Connections are asked to reconnect after this long, so clients rebalance "
              "(0 = never)",
              absl::ZeroDuration(), absl::Hours(24 * 365));
  serve_cmd->add_flag("--no-reflection", no_reflection,
                      "Do not serve gRPC server reflection");
  serve.admin_address = "auto";
  std::string admin_token_file;
  serve_cmd
      ->add_option("--admin-address", serve.admin_address,
                   "host:port of the FeedAdmin service (ApplyConfig, GetConfig); "
                   "loopback unless --admin-token-file; empty = none; auto = "
                   "127.0.0.1 and the --address port + 1 (a free port when that is 0)")
      ->capture_default_str();
  serve_cmd->add_option("--tls-cert-file", serve.tls.cert_file,
                        "PEM certificate chain: serve both services over TLS (with "
                        "--tls-key-file)");
  serve_cmd->add_flag("--plaintext", serve.plaintext,
                      "Serve without TLS on an address that is not loopback (behind a "
                      "mesh sidecar or on a private network); needed there unless "
                      "--tls-cert-file");
  serve_cmd->add_option("--tls-key-file", serve.tls.key_file,
                        "PEM private key of --tls-cert-file");
  serve_cmd->add_option("--tls-client-ca-file", serve.tls.client_ca_file,
                        "PEM CA certificates: the admin service requires a client "
                        "certificate signed by one (mutual TLS)");
  serve_cmd->add_option("--admin-token-file", admin_token_file,
                        "File holding the token admin calls must carry "
                        "(authorization: Bearer <token>)");
  AddDuration(serve_cmd, "--guardrail-interval", &serve.guardrail_interval,
              "How often experiment arms' guardrails are checked (0 = never)",
              absl::ZeroDuration(), absl::Hours(1));

  // serve: live updates (docs/LIVE.md)
  std::string wal_sync = "always";
  serve_cmd->add_option("--wal-dir", serve.live.wal_dir,
                        "Directory of the update log; turns on live updates "
                        "(FeedAdmin UpsertVideos, DeleteVideos, UpsertUsers)");
  serve_cmd
      ->add_option("--wal-sync", wal_sync,
                   "When the update log is fsynced: always (before every "
                   "acknowledgement), interval (at most every --wal-sync-interval) "
                   "or never (the kernel's write-back)")
      ->check(CLI::IsMember({"always", "interval", "never"}))
      ->capture_default_str();
  AddDuration(serve_cmd, "--wal-sync-interval", &serve.live.sync_interval,
              "Longest time between fsyncs with --wal-sync interval",
              absl::Milliseconds(1), absl::Hours(1));
  serve_cmd
      ->add_option("--compact-threshold", serve.live.compact_threshold,
                   "Fold the live delta into a new bundle version once delta videos + "
                   "tombstones + delta users reach this (0 = never; needs "
                   "--bundle-root)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  serve_cmd
      ->add_option("--compact-event-threshold", serve.live.compact_event_threshold,
                   "Also fold once the engagement events (RecordEvents) held since the "
                   "last compaction reach this (0 = never; needs --bundle-root)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  serve_cmd
      ->add_option("--compact-threads", serve.live.compact_threads,
                   "Threads of a compaction's index build (0 = every core)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddDuration(serve_cmd, "--compact-interval", &serve.compact_interval,
              "How often a due compaction is looked for (0 = never)",
              absl::ZeroDuration(), absl::Hours(24));

  // serve: the request log (replay/request_log.h, docs/OPERATIONS.md)
  serve_cmd->add_option(
      "--request-log", serve.request_log.path,
      "Log sampled answered RankFeed calls as replay records to this "
      "file (binary; JSON lines when it ends in .jsonl; default: none)");
  serve_cmd
      ->add_option("--request-log-sample", serve.request_log.sample_rate,
                   "Share of answered calls logged to --request-log")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  serve_cmd
      ->add_option("--request-log-max-bytes", serve.request_log.max_bytes,
                   "Rotate --request-log once it reaches this size (e.g. 256MiB, 1G; "
                   "0 = never)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  serve_cmd
      ->add_option("--request-log-keep", serve.request_log.keep,
                   "Rotated request log files kept (PATH.1 ... PATH.N)")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  // end of the request log's flags

  // admin
  AdminFlags admin;
  auto* admin_cmd = app.add_subcommand("admin", "Call a server's FeedAdmin service");
  admin_cmd->require_subcommand(1);
  auto* admin_apply = admin_cmd->add_subcommand(
      "apply", "Validate a ranking config on the server and serve it (or --dry-run)");
  auto* admin_get = admin_cmd->add_subcommand(
      "get", "Print the config served, its bundles, arm shares and reverted arms");
  auto* admin_status = admin_cmd->add_subcommand(
      "status", "Print the live catalogue's state: versions, counts, log, compaction");
  auto* admin_upsert_videos = admin_cmd->add_subcommand(
      "upsert-videos",
      "Upload or change videos: --file holds an UpsertVideosRequest (textproto, or "
      "JSON when it ends in .json)");
  auto* admin_upsert_users = admin_cmd->add_subcommand(
      "upsert-users",
      "Fresh user embeddings: --file holds an UpsertUsersRequest (textproto or .json)");
  auto* admin_events = admin_cmd->add_subcommand(
      "record-events",
      "Engagement events for the trending and history features: --file holds a "
      "RecordEventsRequest (textproto or .json)");
  auto* admin_delete = admin_cmd->add_subcommand(
      "delete-videos", "Take videos down: never served again once acknowledged");
  auto* admin_compact = admin_cmd->add_subcommand(
      "compact", "Fold the live delta into a new bundle version now");
  for (CLI::App* sub : {admin_upsert_videos, admin_upsert_users, admin_events}) {
    sub->add_option("--file", admin.update_path, "The request")->required();
  }
  admin_delete->add_option("--ids", admin.delete_ids, "Video ids")
      ->required()
      ->delimiter(',');
  for (CLI::App* sub : {admin_apply, admin_get, admin_status, admin_upsert_videos,
                        admin_upsert_users, admin_events, admin_delete, admin_compact}) {
    sub->add_option("--target", admin.target, "The server's --admin-address")
        ->capture_default_str();
    sub->add_option("--token-file", admin.token_file,
                    "Token file, when the server has --admin-token-file");
    AddClientTls(sub, &admin.tls);
  }
  admin_apply->add_option("--config", admin.config_path, "Textproto RankingConfig")
      ->required();
  admin_apply->add_flag("--dry-run", admin.dry_run,
                        "Only validate and print the bucket shares");
  admin_apply->add_option("--expected-version", admin.expected_version,
                          "Refuse unless the server serves this config version");

  // query
  QueryFlags query;
  auto* query_cmd =
      app.add_subcommand("query", "Call RankFeed and print the ranked feeds");
  query_cmd->add_option("--target", query.target, "Server host:port")
      ->capture_default_str();
  AddClientTls(query_cmd, &query.tls);
  query_cmd->add_option("--user", query.users, "User id (repeatable)");
  query_cmd->add_option("--bundle", query.bundle, "Bundle to sample user ids from");
  query_cmd
      ->add_option("--sample-users", query.sample_users,
                   "Also ask for this many users of --bundle (evenly spaced)")
      ->check(CLI::Range(0, 1000000))
      ->needs("--bundle");
  query_cmd
      ->add_option("--client-time-ms", query.client_time_ms,
                   "context.client_time_ms to send (0 = the server's clock)")
      ->check(CLI::Range(int64_t{0}, int64_t{7258118400000}));
  query_cmd
      ->add_flag("--bundle-time", query.bundle_time,
                 "Send the bundle's data time (manifest data_time_ms) as the client "
                 "clock, to look at a bundle of old data as of its own day")
      ->needs("--bundle");
  query_cmd->add_option("--count", query.count, "Page size")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  query_cmd->add_option("--exclude", query.exclude, "Video ids to exclude (repeatable)");
  query_cmd->add_flag("--debug", query.debug, "Show stage timings and candidate counts");
  AddDuration(query_cmd, "--wait", &query.wait,
              "How long to wait for SERVING (0 = don't)");
  AddDuration(query_cmd, "--deadline", &query.deadline, "Per-call deadline",
              absl::Milliseconds(1), absl::Hours(1));

  // loadgen
  LoadgenOptions load;
  std::string load_bundle;
  bool load_json = false;
  absl::Duration load_duration = absl::Seconds(load.duration_s);
  absl::Duration load_warmup = absl::Seconds(load.warmup_s);
  absl::Duration load_deadline = absl::Milliseconds(load.deadline_ms);
  absl::Duration load_wait = absl::Seconds(load.serving_timeout_s);
  auto* load_cmd = app.add_subcommand("loadgen", "Load-test RankFeed over gRPC");
  load_cmd->add_option("--target", load.target, "Server host:port")->required();
  AddClientTls(load_cmd, &load.tls);
  load_cmd->add_option("--bundle", load_bundle,
                       "Bundle to draw user and video ids from (else random ids: all "
                       "cold start)");
  load_cmd
      ->add_option("--concurrency", load.concurrency,
                   "Calls in flight (closed loop) or their cap (open loop)")
      ->capture_default_str();
  load_cmd->add_option("--qps", load.qps, "Open-loop target rate (0 = closed loop)")
      ->capture_default_str();
  load_cmd->add_option("--requests", load.requests, "Stop after this many measured calls")
      ->capture_default_str();
  AddDuration(load_cmd, "--duration", &load_duration, "Stop after this long",
              absl::ZeroDuration(), absl::Hours(24 * 30));
  AddDuration(load_cmd, "--warmup", &load_warmup, "Time not measured at the start",
              absl::ZeroDuration(), absl::Hours(24));
  load_cmd->add_option("--count", load.count, "Page size")->capture_default_str();
  load_cmd->add_option("--exclude-count", load.exclude, "Random exclude ids per request")
      ->capture_default_str();
  AddDuration(load_cmd, "--deadline", &load_deadline, "Per-call deadline",
              absl::Milliseconds(1), absl::Hours(1));
  AddDuration(load_cmd, "--wait", &load_wait,
              "How long to wait for the target to be SERVING", absl::Milliseconds(1),
              absl::Hours(24));
  load_cmd
      ->add_option("--cold-fraction", load.cold_fraction,
                   "Share of requests for unknown users")
      ->capture_default_str();
  load_cmd->add_option("--seed", load.seed, "Random seed")->capture_default_str();
  load_cmd->add_option("--admin-target", load.admin_target,
                       "The server's --admin-address, for --upserts-per-second");
  load_cmd
      ->add_option("--upserts-per-second", load.upserts_per_second,
                   "Stream this many new videos per second to the live catalogue during "
                   "the run (needs --admin-target and --bundle)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  load_cmd
      ->add_option("--upsert-batch", load.upsert_batch, "Videos per UpsertVideos call")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  load_cmd
      ->add_option("--upsert-ids", load.upsert_ids,
                   "Cycle the upserted ids over this many (0 = always new videos): the "
                   "live catalogue stops growing once all were sent")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  absl::Duration load_interval = absl::ZeroDuration();
  AddDuration(
      load_cmd, "--interval", &load_interval,
      "Print a line (a JSON object with --json) per interval: calls, errors, p50, "
      "p99 and max of the calls completed in it (0 = none)",
      absl::ZeroDuration(), absl::Hours(24));
  load_cmd->add_flag("--json", load_json, "Also print the report as one JSON line");

  // replay
  ReplayCommand replay;
  absl::Duration replay_deadline = absl::Seconds(1);
  bool replay_no_latency = false;
  auto* replay_cmd = app.add_subcommand(
      "replay",
      "Replay a logged day of requests through configs, bundles or servers; compare "
      "quality (with paired intervals) and latency");
  replay_cmd->add_option("--log", replay.log_path, "Replay log (binary, or .jsonl)")
      ->required();
  replay_cmd
      ->add_option("--on-bad-record", replay.on_bad_record,
                   "A truncated or corrupt record: fail, or skip it and count it")
      ->check(CLI::IsMember({"fail", "skip"}))
      ->capture_default_str();
  replay_cmd->add_option(
      "--config", replay.configs,
      "A variant's config (textproto); repeat for each variant; none = "
      "the defaults");
  replay_cmd->add_option("--bundle", replay.bundles,
                         "Bundle: one for every variant, or one per variant");
  replay_cmd->add_option("--target", replay.targets,
                         "Replay against a running server (host:port) instead, one per "
                         "variant");
  replay_cmd->add_option("--name", replay.names, "Variant names, one per variant");
  replay_cmd->add_option("--sweep", replay.sweep,
                         "One variant per value of a parameter, e.g. "
                         "ann_beam_width=128,256,512: the recall-latency curve");
  replay_cmd->add_flag(
      "--arms", replay.arms,
      "One variant per experiment arm of the --config (every user pinned "
      "to it), after its defaults and its users' own arms");
  replay_cmd->add_option("--threads", replay.options.threads, "In-process threads")
      ->capture_default_str();
  replay_cmd->add_option("--k", replay.options.k, "Cut-off of NDCG, recall and hit rate")
      ->capture_default_str();
  replay_cmd->add_option("--positive", replay.options.positive_objective,
                         "Objective whose positive outcomes are relevant (default: the "
                         "log's)");
  replay_cmd->add_option("--seed", replay.options.seed, "Bootstrap seed")
      ->capture_default_str();
  replay_cmd
      ->add_option("--resamples", replay.options.bootstrap_resamples,
                   "Bootstrap resamples")
      ->capture_default_str();
  replay_cmd
      ->add_option("--top-diffs", replay.options.top_diffs,
                   "Requests whose pages differ most, kept per variant")
      ->capture_default_str();
  replay_cmd->add_option("--limit", replay.limit, "Replay only the first N records")
      ->capture_default_str();
  replay_cmd
      ->add_option("--concurrency", replay.options.concurrency,
                   "--target: calls in flight")
      ->capture_default_str();
  replay_cmd->add_flag("--open-loop", replay.options.open_loop,
                       "--target: send at the logged arrival times");
  replay_cmd
      ->add_option("--speed", replay.options.speed,
                   "--open-loop: time scale (2 = twice as fast)")
      ->capture_default_str();
  AddDuration(replay_cmd, "--deadline", &replay_deadline, "--target: per-call deadline",
              absl::Milliseconds(1), absl::Hours(1));
  replay_cmd->add_flag("--no-latency", replay_no_latency,
                       "Leave latency out: the output is then the same bytes for the "
                       "same inputs and seed");
  replay_cmd->add_option("--json", replay.json_out, "Write the report as JSON");
  replay_cmd->add_option("--html", replay.html_out,
                         "Write a self-contained HTML report (SVG charts)");
  // replay-join (training/replay_join.h, docs/REPLAY.md)
  ReplayJoinOptions join;
  std::string join_mapping, join_on_bad = "fail";
  auto* join_cmd = app.add_subcommand(
      "replay-join",
      "Join later outcomes (an impression/engagement log) onto a request log, making "
      "a replay log");
  join_cmd
      ->add_option("--requests", join.request_logs,
                   "Request log(s) written by serve --request-log, oldest first "
                   "(repeatable or comma-separated: PATH.2,PATH.1,PATH)")
      ->delimiter(',')
      ->required();
  join_cmd
      ->add_option("--outcomes", join.outcomes_path,
                   "Impression/engagement log (CSV or TSV with a header)")
      ->required();
  join_cmd
      ->add_option("--mapping", join_mapping,
                   "Column mapping of --outcomes, textproto feedrank.v1.LogMapping (as "
                   "train --mapping)")
      ->required();
  AddDuration(join_cmd, "--window", &join.window,
              "Outcomes within this long after a request (and before the user's next "
              "request) join it",
              absl::Milliseconds(1), absl::Hours(24 * 30));
  join_cmd
      ->add_option("--out", join.out_path, "Replay log to write (.jsonl = JSON lines)")
      ->required();
  join_cmd
      ->add_option("--on-bad-record", join_on_bad,
                   "A bad request log record: fail, or skip it (counted)")
      ->check(CLI::IsMember({"fail", "skip"}))
      ->capture_default_str();
  // end of replay-join's flags

  // Exit codes (docs/OPERATIONS.md): 0 done; 1 failed at run time; 2 bad
  // usage or an invalid argument.
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  if (synth_cmd->parsed()) {
    if (!synth_index_type.empty()) synth.index.set_type(synth_index_type);
    auto hidden = ParseWidths(synth_hidden);
    if (!hidden.ok()) return Fail(hidden.status());
    synth.hidden = *std::move(hidden);
    absl::Status status = WriteSynthBundle(synth, synth_out);
    return status.ok() ? 0 : Fail(status);
  }
  if (train_cmd->parsed()) {
    auto mapping = ReadLogMapping(train_mapping);
    if (!mapping.ok()) return Fail(mapping.status());
    train.mapping = *std::move(mapping);
    train.embeddings.seed = train.seed;
    train.mlp.seed = train.seed;
    train.evaluate = !train_no_eval;
    auto hidden = ParseWidths(train_hidden);
    if (!hidden.ok()) return Fail(hidden.status());
    train.mlp.hidden = *std::move(hidden);
    if (!train_eval_config.empty()) {
      auto config = ReadConfigFile(train_eval_config);
      if (!config.ok()) return Fail(config.status());
      train.eval_config = *std::move(config);
    }
    auto result = Train(train);
    if (!result.ok()) return Fail(result.status());
    std::cout << result->report;
    if (!train_report.empty()) {
      std::ofstream out(train_report, std::ios::trunc);
      out << result->report;
      if (!out.flush()) return Fail(absl::DataLossError(train_report + ": write failed"));
    }
    return 0;
  }
  if (build_cmd->parsed()) {
    if (!build_index_type.empty()) build.index.set_type(build_index_type);
    absl::Status status = BuildBundle(build);
    return status.ok() ? 0 : Fail(status);
  }
  if (serve_cmd->parsed()) {
    SetMinLogLevel(*ParseLogLevel(log_level));
    SetLogFormat(*ParseLogFormat(log_format));
    serve.reflection = !no_reflection;
    if (serve.admin_address == "auto") {
      std::string host;
      int port = 0;
      if (ParseHostPort(serve.address, &host, &port).ok() && port > 0 && port < 65535) {
        serve.admin_address = absl::StrCat("127.0.0.1:", port + 1);
      } else {
        serve.admin_address = "127.0.0.1:0";
      }
    }
    if (!admin_token_file.empty()) {
      auto token = ReadTokenFile(admin_token_file);
      if (!token.ok()) return Fail(token.status());
      serve.admin_token = *std::move(token);
    }
    serve.live.sync = *ParseWalSync(wal_sync);
    if (absl::Status valid = ValidateServerOptions(serve); !valid.ok())
      return Fail(valid);
    return RunServe(serve);
  }
  if (admin_cmd->parsed()) {
    absl::Status status;
    if (admin_apply->parsed()) {
      status = RunAdminApply(admin);
    } else if (admin_get->parsed()) {
      status = RunAdminGet(admin);
    } else if (admin_status->parsed()) {
      status = RunAdminStatus(admin);
    } else if (admin_upsert_videos->parsed()) {
      status = RunAdminUpsert(admin, AdminBatch::kVideos);
    } else if (admin_upsert_users->parsed()) {
      status = RunAdminUpsert(admin, AdminBatch::kUsers);
    } else if (admin_events->parsed()) {
      status = RunAdminUpsert(admin, AdminBatch::kEvents);
    } else if (admin_compact->parsed()) {
      status = RunAdminCompact(admin);
    } else {
      status = RunAdminDelete(admin);
    }
    return status.ok() ? 0 : Fail(status);
  }
  if (query_cmd->parsed()) {
    if (query.sample_users > 0) {
      auto users = ReadIds(query.bundle, kUserIdsFile);
      if (!users.ok()) return Fail(users.status());
      const size_t n = users->size();
      std::vector<uint64_t> sampled;
      for (int i = 0; i < query.sample_users && size_t(i) < n; ++i) {
        sampled.push_back((*users)[i * n / query.sample_users]);
      }
      query.users.insert(query.users.begin(), sampled.begin(), sampled.end());
    }
    if (query.bundle_time) {
      auto manifest = ReadManifest(query.bundle);
      if (!manifest.ok()) return Fail(manifest.status());
      query.client_time_ms = manifest->data_time_ms();
    }
    if (query.users.empty()) {
      return Fail(
          absl::InvalidArgumentError("give --user or --bundle with --sample-users"));
    }
    return RunQuery(query);
  }
  if (replay_cmd->parsed()) {
    replay.options.include_latency = !replay_no_latency;
    replay.options.deadline_ms =
        static_cast<int>(absl::ToInt64Milliseconds(replay_deadline));
    if (absl::Status valid = ValidateReplayOptions(replay.options); !valid.ok()) {
      return Fail(valid);
    }
    absl::Status status = RunReplayCommand(std::move(replay));
    return status.ok() ? 0 : Fail(status);
  }
  if (load_cmd->parsed()) {
    load.duration_s = absl::ToDoubleSeconds(load_duration);
    load.warmup_s = absl::ToDoubleSeconds(load_warmup);
    load.deadline_ms = static_cast<int>(absl::ToInt64Milliseconds(load_deadline));
    load.serving_timeout_s = absl::ToDoubleSeconds(load_wait);
    load.interval_s = absl::ToDoubleSeconds(load_interval);
    if (load.interval_s > 0) {
      load.on_interval = [load_json](const LoadgenInterval& interval) {
        std::cout << FormatInterval(interval, load_json) << std::endl;
      };
    }
    if (!load_bundle.empty()) {
      auto users = ReadIds(load_bundle, kUserIdsFile);
      if (!users.ok()) return Fail(users.status());
      auto videos = ReadIds(load_bundle, kVideoIdsFile);
      if (!videos.ok()) return Fail(videos.status());
      load.users = *std::move(users);
      load.videos = *std::move(videos);
      auto manifest = ReadManifest(load_bundle);
      if (!manifest.ok()) return Fail(manifest.status());
      load.upsert_dim = static_cast<int>(manifest->dim());
    }
    auto report = RunLoadgen(load);
    if (!report.ok()) return Fail(report.status());
    std::cout << FormatReport(*report);
    if (load_json) std::cout << ReportJson(*report) << "\n";
    return 0;
  }
  // replay-join
  if (join_cmd->parsed()) {
    auto mapping = ReadLogMapping(join_mapping);
    if (!mapping.ok()) return Fail(mapping.status());
    join.mapping = *std::move(mapping);
    join.on_bad_record =
        join_on_bad == "skip" ? BadRecordPolicy::kSkip : BadRecordPolicy::kFail;
    auto stats = JoinReplayLog(join);
    if (!stats.ok()) return Fail(stats.status());
    for (const std::string& problem : stats->problems) {
      std::fprintf(stderr, "skipped: %s\n", problem.c_str());
    }
    std::fprintf(stderr,
                 "replay-join: %lld requests (%lld with outcomes, %lld bad records "
                 "skipped); %lld outcomes: %lld joined, %lld matched no request; wrote "
                 "%s\n",
                 static_cast<long long>(stats->requests),
                 static_cast<long long>(stats->requests_with_outcomes),
                 static_cast<long long>(stats->skipped_records),
                 static_cast<long long>(stats->outcomes),
                 static_cast<long long>(stats->outcomes_joined),
                 static_cast<long long>(stats->outcomes_unmatched),
                 join.out_path.c_str());
    return 0;
  }
  // end of replay-join
  return 0;
}
