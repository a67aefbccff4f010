// Writes the seed corpora of the fuzz targets into fuzz/corpus/NAME: small
// valid inputs made by feedrank's own writers (so they follow the formats as
// written today), a few near misses, and the shipped configs and log lines.
// Inputs a fuzzer found that crashed are added there by hand, named
// regression-*, and kept (this tool never removes a file).
//
//   make_seeds SOURCE_DIR      (run by scripts/fuzz.sh seeds)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/npy.h"
#include "base/wal.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/admin.pb.h"
#include "feedrank/v1/ranker.pb.h"
#include "feedrank/v1/replay.pb.h"
#include "fuzz/fuzz_util.h"
#include "replay/replay_log.h"

namespace fs = std::filesystem;
using namespace feedrank;

namespace {

std::string root;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Put(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = root + "/fuzz/corpus/" + target;
  fs::create_directories(dir);
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "make_seeds: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

std::string Scratch(const std::string& name) { return fuzz::ScratchDir() + "/" + name; }

void NpySeeds() {
  std::vector<float> f = {1, -2.5f, 3, 0.25f, 5, 6};
  Check(WriteNpy<float>(Scratch("a.npy"), f, {3, 2}));
  Put("npy", "float-3x2.npy", Slurp(Scratch("a.npy")));
  std::vector<int64_t> i = {1, 2, 3, 1LL << 40};
  Check(WriteNpy<int64_t>(Scratch("b.npy"), i, {4}));
  Put("npy", "int64-4.npy", Slurp(Scratch("b.npy")));
  std::vector<int32_t> j = {7, -7};
  Check(WriteNpy<int32_t>(Scratch("c.npy"), j, {2}));
  Put("npy", "int32-2.npy", Slurp(Scratch("c.npy")));
  std::vector<double> d = {0.5};
  Check(WriteNpy<double>(Scratch("d.npy"), d, {1, 1}));
  Put("npy", "double-1x1.npy", Slurp(Scratch("d.npy")));
}

void BundleSeeds() {
  const Bundle& bundle = *fuzz::SmallBundle();
  Put("manifest", "synth.json", Slurp(bundle.dir + "/manifest.json"));
  for (const auto& entry : fs::directory_iterator(bundle.dir)) {
    const std::string name = entry.path().filename();
    if (entry.path().extension() == ".npy" && entry.file_size() < 8192) {
      Put("npy", "bundle-" + name, Slurp(entry.path()));
    }
  }
}

void IndexSeeds() {
  constexpr int kDim = 8;
  constexpr int64_t kRows = 64;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(kRows * kDim);
  for (float& v : x) v = normal(rng);
  const char* types[] = {"flat", "ivf", "hnsw"};
  for (int t = 0; t < 3; ++t) {
    IndexSpec spec;
    spec.set_type(types[t]);
    if (t == 1) {
      spec.set_ivf_nlist(4);
      spec.set_ivf_nprobe(2);
    }
    if (t == 2) {
      spec.set_hnsw_m(8);
      spec.set_hnsw_ef_construction(32);
    }
    auto index = AnnIndex::Build(x.data(), kRows, kDim, &spec, nullptr, 1);
    Check(index.status());
    Check((*index)->Write(Scratch("i.faiss")));
    Put("index", std::string(types[t]) + ".faiss",
        std::string(1, char(t)) + Slurp(Scratch("i.faiss")));
  }
}

void ConfigSeeds() {
  for (const auto& entry : fs::directory_iterator(root + "/config")) {
    Put("config", entry.path().filename(), Slurp(entry.path()));
  }
  Put("config", "empty.textproto", "");
}

std::string Serialized(const google::protobuf::Message& m) {
  return m.SerializeAsString();
}

void RequestSeeds() {
  const Bundle& bundle = *fuzz::SmallBundle();
  const CatalogView& view = *bundle.view;
  v1::RankFeedRequest known;
  known.set_user_id(bundle.catalog->user_id(0));
  Put("rank_request", "known-user", Serialized(known));
  v1::RankFeedRequest full = known;
  full.set_count(50);
  for (int32_t row = 0; row < 30; ++row) full.add_exclude_ids(view.video_id(row));
  full.mutable_context()->set_client_time_ms(1793491200000);
  full.mutable_context()->set_utc_offset_minutes(480);
  full.mutable_context()->set_device(v1::DEVICE_ANDROID);
  full.set_request_id("seed-1");
  full.set_debug(true);
  Put("rank_request", "count-exclude-context-debug", Serialized(full));
  v1::RankFeedRequest cold;
  cold.set_user_id(987654321);
  cold.set_count(400);
  Put("rank_request", "cold-user-whole-catalogue", Serialized(cold));
  v1::RankFeedRequest pinned = known;
  auto* pin = pinned.add_pin_arms();
  pin->set_layer("ranking");
  pin->set_arm("treatment");
  Put("rank_request", "pinned", Serialized(pinned));
}

v1::VideoUpdate Video(uint64_t id, int dim, float base) {
  v1::VideoUpdate v;
  v.set_id(id);
  for (int i = 0; i < dim; ++i) v.add_embedding(base + 0.01f * i);
  v.set_creator_id(id % 17);
  v.set_duration_ms(15000);
  v.set_popularity(3);
  return v;
}

void LiveSeeds() {
  const Bundle& bundle = *fuzz::SmallBundle();
  const int dim = bundle.catalog->dim();
  v1::LiveUpdateRecord upserts;
  *upserts.add_videos() = Video(5000001, dim, 0.1f);
  *upserts.add_videos() =
      Video(bundle.view->video_id(3), dim, -0.2f);  // replaces a base video
  Put("live_batch", "upserts", Serialized(upserts));
  v1::LiveUpdateRecord deletes;
  deletes.add_deletes(bundle.view->video_id(5));
  deletes.add_deletes(424242);  // unknown: a counted no-op
  Put("live_batch", "deletes", Serialized(deletes));
  v1::LiveUpdateRecord users;
  auto* u = users.add_users();
  u->set_id(bundle.catalog->user_id(1));
  for (int i = 0; i < dim; ++i) u->add_embedding(0.05f * i);
  u->set_activity(4);
  Put("live_batch", "users", Serialized(users));
  v1::LiveUpdateRecord mixed = upserts;
  mixed.MergeFrom(deletes);
  mixed.MergeFrom(users);
  Put("live_batch", "mixed", Serialized(mixed));
  v1::LiveUpdateRecord events;
  for (int i = 0; i < 4; ++i) {
    v1::EngagementEvent* e = events.add_events();
    e->set_user_id(bundle.catalog->user_id(i));
    e->set_video_id(bundle.view->video_id(i));
    e->set_time_ms(int64_t{1700000000000} + i * 60000);
    e->set_positive(i % 2 == 0);
  }
  Put("live_batch", "events", Serialized(events));
  v1::LiveUpdateRecord bad = upserts;
  bad.mutable_videos(0)->add_embedding(1);  // wrong dimension
  Put("live_batch", "wrong-dimension", Serialized(bad));

  // The update log: a real segment (mode byte 0) and the same records for
  // the harness to frame (mode byte 1).
  const std::string dir = Scratch("wal");
  fuzz::ResetDir(dir);
  WalOptions options;
  options.dir = dir;
  options.sync = WalSync::kNever;
  std::string framed(1, '\1');
  {
    auto wal = WriteAheadLog::Open(
        options, FileSystem::Real(),
        [](uint64_t, absl::string_view) { return absl::OkStatus(); }, nullptr);
    Check(wal.status());
    for (const v1::LiveUpdateRecord* r : {&upserts, &deletes, &users}) {
      const std::string payload = Serialized(*r);
      Check((*wal)->Append(payload).status());
      framed.push_back(static_cast<char>(payload.size() & 0xff));
      framed.push_back(static_cast<char>(payload.size() >> 8));
      framed += payload;
    }
  }
  Put("wal", "framed-3-records", framed);
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.file_size() > 20)
      Put("wal", "segment-3-records", std::string(1, '\0') + Slurp(entry.path()));
  }
}

void ReplaySeeds() {
  v1::ReplayRecord record;
  record.mutable_request()->set_user_id(7);
  record.mutable_request()->set_count(10);
  record.set_time_ms(1793491200000);
  record.mutable_served()->set_bundle_version("synth");
  record.mutable_served()->add_video_ids(11);
  record.mutable_served()->add_video_ids(12);
  record.add_objectives("click");
  record.add_objectives("like");
  auto* o = record.add_outcomes();
  o->set_video_id(11);
  o->set_time_ms(1793491201000);
  o->add_labels(1);
  o->add_labels(0);
  record.set_known_user(true);
  record.set_positive_objective("click");
  for (ReplayLogFormat format : {ReplayLogFormat::kBinary, ReplayLogFormat::kJsonLines}) {
    const std::string path = Scratch("log");
    {
      auto writer = ReplayLogWriter::Open(path, format);
      Check(writer.status());
      Check((*writer)->Append(record));
      record.mutable_request()->set_user_id(8);
      Check((*writer)->Append(record));
      Check((*writer)->Close());
    }
    const bool json = format == ReplayLogFormat::kJsonLines;
    Put("replay_log", json ? "two-records.jsonl" : "two-records.bin",
        std::string(1, json ? '\1' : '\0') + Slurp(path));
  }
}

void InteractionSeeds() {
  std::ifstream in(root + "/data/kuairand-likehate/interactions.tsv");
  std::string line, lines;
  for (int i = 0; i < 12 && std::getline(in, line); ++i) lines += line + "\n";
  Put("interaction_log", "kuairand-head.tsv", std::string(1, '\0') + lines);
  std::string mapping;
  std::ifstream m(root + "/data/kuairand-likehate/mapping.textproto");
  while (std::getline(m, line)) {
    if (!line.empty() && line[0] != '#') mapping += line + "\n";
  }
  Put("interaction_log", "mapping-then-log",
      std::string(1, '\1') + mapping + "----\n" + lines);
  Put("interaction_log", "csv-mapping",
      "\1delimiter: \",\"\nuser_column: \"u\"\nitem_column: \"i\"\ntime_column: \"t\"\n"
      "time_unit: SECONDS\nretrieval_objective: \"click\"\nobjectives { name: \"click\" "
      "column: \"c\" "
      "}\n----\nu,i,t,c\n1,2,1650000000,1\n1,3,1650000100,0\n2,2,1650086400,1\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds SOURCE_DIR\n");
    return 2;
  }
  root = argv[1];
  NpySeeds();
  BundleSeeds();
  IndexSeeds();
  ConfigSeeds();
  RequestSeeds();
  LiveSeeds();
  ReplaySeeds();
  InteractionSeeds();
  std::printf("make_seeds: corpora written under %s/fuzz/corpus\n", root.c_str());
  return 0;
}
