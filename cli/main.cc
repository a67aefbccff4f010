// feedrank: one binary, one subcommand per job. `feedrank <command> --help`
// describes each.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/npy.h"
#include "cli/build_bundle.h"
#include "cli/client.h"
#include "cli/loadgen.h"
#include "cli/synth.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
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
}

int RunServe(const ServerOptions& options) {
  // SIGINT/SIGTERM are taken synchronously by a thread of their own
  // (sigwait): blocked here, before gRPC starts its threads, which inherit
  // the mask. A stop interrupts a bundle load in progress.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto server = FeedServer::Start(options);
  if (!server.ok()) return Fail(server.status());
  FeedServer* running = server->get();
  std::atomic<bool> signalled{false};
  std::thread stopper([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    signalled.store(true);
    LogInfo("received %s", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    running->Shutdown();
  });
  absl::Status loaded = running->Load();
  if (!loaded.ok() && !signalled.load()) {
    // Wake the stopper thread so that it shuts the server down and exits.
    pthread_kill(stopper.native_handle(), SIGTERM);
    stopper.join();
    return Fail(loaded);
  }
  stopper.join();
  if (!loaded.ok()) LogInfo("stopped before the bundle finished loading");
  return 0;
}

struct QueryFlags {
  std::string target = "localhost:50051";
  std::vector<uint64_t> users;
  std::string bundle;
  int sample_users = 0;
  int64_t client_time_ms = 0;
  bool bundle_time = false;
  int count = 10;
  std::vector<uint64_t> exclude;
  bool debug = false;
  double wait_s = 30;
  int deadline_ms = 1000;
};

int RunQuery(const QueryFlags& flags) {
  auto channel = grpc::CreateChannel(flags.target, grpc::InsecureChannelCredentials());
  if (flags.wait_s > 0) {
    absl::Status ready =
        WaitForServing(channel, kRankerServiceName, absl::Seconds(flags.wait_s));
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
                         std::chrono::milliseconds(flags.deadline_ms));
    grpc::Status status = stub->RankFeed(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "user %llu: %s: %s\n", static_cast<unsigned long long>(user),
                   CodeName(status.error_code()), status.error_message().c_str());
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
                        "Write the held-out days as a replay log (JSON lines)");
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
  train_cmd->add_option("--seed", train.seed, "Random seed")->capture_default_str();

  // serve
  ServerOptions serve;
  double drain_grace_s = 0, drain_timeout_s = 10;
  auto* serve_cmd = app.add_subcommand("serve", "Serve RankFeed over gRPC");
  serve_cmd->add_option("--bundle", serve.bundle_dir, "Bundle directory")->required();
  serve_cmd->add_option("--address", serve.address, "host:port to listen on")
      ->capture_default_str();
  serve_cmd->add_option("--config", serve.config_path,
                        "Ranking config (textproto RankingConfig); default: built-in "
                        "defaults");
  serve_cmd
      ->add_option("--max-request-bytes", serve.max_request_bytes,
                   "Larger requests get RESOURCE_EXHAUSTED")
      ->capture_default_str();
  serve_cmd
      ->add_option("--workers", serve.workers,
                   "Ranking threads (0 = one per hardware thread)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-queue", serve.max_queue,
                   "Calls that may wait for a ranking thread before UNAVAILABLE "
                   "(0 = 64 per thread)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--drain-grace", drain_grace_s,
                   "Seconds NOT_SERVING before refusing calls on shutdown")
      ->capture_default_str();
  serve_cmd
      ->add_option("--drain-timeout", drain_timeout_s,
                   "Seconds in-flight calls get to finish on shutdown")
      ->capture_default_str();

  // query
  QueryFlags query;
  auto* query_cmd =
      app.add_subcommand("query", "Call RankFeed and print the ranked feeds");
  query_cmd->add_option("--target", query.target, "Server host:port")
      ->capture_default_str();
  query_cmd->add_option("--user", query.users, "User id (repeatable)");
  query_cmd->add_option("--bundle", query.bundle, "Bundle to sample user ids from");
  query_cmd
      ->add_option("--sample-users", query.sample_users,
                   "Also ask for this many users of --bundle (evenly spaced)")
      ->needs("--bundle");
  query_cmd->add_option("--client-time-ms", query.client_time_ms,
                        "context.client_time_ms to send (0 = the server's clock)");
  query_cmd
      ->add_flag("--bundle-time", query.bundle_time,
                 "Send the bundle's data time (manifest data_time_ms) as the client "
                 "clock, to look at a bundle of old data as of its own day")
      ->needs("--bundle");
  query_cmd->add_option("--count", query.count, "Page size")->capture_default_str();
  query_cmd->add_option("--exclude", query.exclude, "Video ids to exclude (repeatable)");
  query_cmd->add_flag("--debug", query.debug, "Show stage timings and candidate counts");
  query_cmd->add_option("--wait", query.wait_s, "Seconds to wait for SERVING (0 = don't)")
      ->capture_default_str();
  query_cmd->add_option("--deadline-ms", query.deadline_ms, "Per-call deadline")
      ->capture_default_str();

  // loadgen
  LoadgenOptions load;
  std::string load_bundle;
  bool load_json = false;
  auto* load_cmd = app.add_subcommand("loadgen", "Load-test RankFeed over gRPC");
  load_cmd->add_option("--target", load.target, "Server host:port")->required();
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
  load_cmd->add_option("--duration", load.duration_s, "Stop after this many seconds")
      ->capture_default_str();
  load_cmd->add_option("--warmup", load.warmup_s, "Seconds not measured at the start")
      ->capture_default_str();
  load_cmd->add_option("--count", load.count, "Page size")->capture_default_str();
  load_cmd->add_option("--exclude", load.exclude, "Exclude ids per request")
      ->capture_default_str();
  load_cmd->add_option("--deadline-ms", load.deadline_ms, "Per-call deadline")
      ->capture_default_str();
  load_cmd
      ->add_option("--cold-fraction", load.cold_fraction,
                   "Share of requests for unknown users")
      ->capture_default_str();
  load_cmd->add_option("--seed", load.seed, "Random seed")->capture_default_str();
  load_cmd->add_flag("--json", load_json, "Also print the report as one JSON line");

  CLI11_PARSE(app, argc, argv);

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
    serve.drain_grace = absl::Seconds(drain_grace_s);
    serve.drain_timeout = absl::Seconds(drain_timeout_s);
    return RunServe(serve);
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
  if (load_cmd->parsed()) {
    if (!load_bundle.empty()) {
      auto users = ReadIds(load_bundle, kUserIdsFile);
      if (!users.ok()) return Fail(users.status());
      auto videos = ReadIds(load_bundle, kVideoIdsFile);
      if (!videos.ok()) return Fail(videos.status());
      load.users = *std::move(users);
      load.videos = *std::move(videos);
    }
    auto report = RunLoadgen(load);
    if (!report.ok()) return Fail(report.status());
    std::cout << FormatReport(*report);
    if (load_json) std::cout << ReportJson(*report) << "\n";
    return 0;
  }
  return 0;
}
