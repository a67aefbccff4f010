#include "fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli/synth.h"

namespace feedrank::fuzz {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz: %s\n", what.c_str());
  std::abort();
}

std::string MakeScratchDir() {
  std::string base;
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') {
    base = t;
  } else if (std::filesystem::is_directory("/dev/shm")) {
    base = "/dev/shm";
  } else {
    base = "/tmp";
  }
  std::string pattern = base + "/feedrank-fuzz-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) Die("cannot make a directory under " + base);
  return pattern;
}

}  // namespace

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(MakeScratchDir());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return *dir;
}

std::string WriteInput(const std::string& name, absl::string_view data) {
  std::string path = ScratchDir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) Die("cannot write " + path);
  return path;
}

void ResetDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!std::filesystem::create_directories(dir, ec) || ec) Die("cannot make " + dir);
}

const std::shared_ptr<const Bundle>& SmallBundle() {
  static const std::shared_ptr<const Bundle>* bundle = [] {
    SynthOptions options;
    options.videos = 400;
    options.users = 100;
    options.dim = 16;
    options.seed = 7;
    options.hidden = {16, 16};
    options.index.set_type("hnsw");
    options.index.set_hnsw_m(8);
    options.index.set_hnsw_ef_construction(32);
    options.threads = 1;
    std::string dir = ScratchDir() + "/bundle";
    if (absl::Status s = WriteSynthBundle(options, dir); !s.ok()) Die(s.ToString());
    auto loaded = LoadBundle(dir);
    if (!loaded.ok()) Die(loaded.status().ToString());
    return new std::shared_ptr<const Bundle>(*std::move(loaded));
  }();
  return *bundle;
}

}  // namespace feedrank::fuzz
