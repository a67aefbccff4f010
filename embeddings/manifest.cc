#include "embeddings/manifest.h"

#include <google/protobuf/util/json_util.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {

std::string BundlePath(const std::string& dir, const std::string& file) {
  if (dir.empty() || dir.back() == '/') return dir + file;
  return absl::StrCat(dir, "/", file);
}

absl::Status ValidateManifest(const BundleManifest& m) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(kManifestFile, ": ", parts...));
  };
  if (m.format_version() != kBundleFormatVersion) {
    return bad("format_version is ", m.format_version(), ", this build reads ",
               kBundleFormatVersion);
  }
  if (m.version().empty()) return bad("version is empty");
  if (m.dim() == 0 || m.dim() > 4096) {
    return bad("dim ", m.dim(), " is outside [1, 4096]");
  }
  if (m.num_videos() == 0) return bad("num_videos is 0");
  if (m.num_videos() > INT32_MAX) {
    return bad("num_videos ", m.num_videos(), " exceeds 2^31-1");
  }
  if (m.num_users() > INT32_MAX) {
    return bad("num_users ", m.num_users(), " exceeds 2^31-1");
  }
  if (absl::Status index = ValidateIndexSpec(m.index()); !index.ok()) {
    return bad(index.message());
  }
  if (m.model().objectives().empty()) return bad("model.objectives is empty");
  std::set<std::string> names;
  for (const std::string& name : m.model().objectives()) {
    if (name.empty()) return bad("model.objectives has an empty name");
    if (!names.insert(name).second) {
      return bad("model.objectives names '", name, "' twice");
    }
  }
  if (m.model().features().empty()) return bad("model.features is empty");
  for (uint32_t width : m.model().hidden()) {
    if (width == 0 || width > 8192) {
      return bad("model.hidden has width ", width, ", outside [1, 8192]");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateIndexSpec(const IndexSpec& spec) {
  const std::string& type = spec.type();
  if (type != "hnsw" && type != "ivf" && type != "flat") {
    return absl::InvalidArgumentError(
        absl::StrCat("index.type '", type, "' is not one of hnsw, ivf, flat"));
  }
  auto range = [](const char* field, uint32_t value, uint32_t lo,
                  uint32_t hi) -> absl::Status {
    if (value != 0 && (value < lo || value > hi)) {
      return absl::InvalidArgumentError(absl::StrCat("index.", field, ": ", value,
                                                     " is outside [", lo, ", ", hi,
                                                     "] (0 = default)"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(range("hnsw_m", spec.hnsw_m(), 2, 256));
  RETURN_IF_ERROR(range("hnsw_ef_construction", spec.hnsw_ef_construction(), 1, 20000));
  RETURN_IF_ERROR(range("beam_width", spec.beam_width(), 1, 20000));
  RETURN_IF_ERROR(range("ivf_nlist", spec.ivf_nlist(), 1, 1u << 24));
  RETURN_IF_ERROR(range("ivf_nprobe", spec.ivf_nprobe(), 1,
                        spec.ivf_nlist() > 0 ? spec.ivf_nlist() : 1u << 24));
  const std::string& codes = spec.scan_codes();
  if (!codes.empty() && codes != "float" && codes != "bf16") {
    return absl::InvalidArgumentError(
        absl::StrCat("index.scan_codes '", codes, "' is not one of float, bf16"));
  }
  if (codes == "bf16" && type != "ivf") {
    return absl::InvalidArgumentError(
        absl::StrCat("index.scan_codes bf16 applies to an ivf index, not ", type));
  }
  return absl::OkStatus();
}

absl::StatusOr<BundleManifest> ReadManifest(const std::string& dir, FileSystem& fs) {
  const std::string path = BundlePath(dir, kManifestFile);
  auto text = ReadFileToString(fs, path, 16 << 20);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(
          absl::StrCat(path, ": no such file (is ", dir, " a bundle directory?)"));
    }
    return text.status();
  }
  BundleManifest manifest;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(*text, &manifest, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid manifest: ", status.message().as_string()));
  }
  absl::Status valid = ValidateManifest(manifest);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(BundlePath(dir, std::string(valid.message())));
  }
  return manifest;
}

absl::Status WriteManifest(const std::string& dir, const BundleManifest& manifest,
                           FileSystem& fs) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(manifest, &json, options);
  if (!status.ok()) {
    return absl::InternalError(status.message().as_string());
  }
  return WriteFileAtomically(fs, BundlePath(dir, kManifestFile), {json});
}

}  // namespace feedrank
