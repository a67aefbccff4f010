#include "ranking/engagement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "base/npy.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

constexpr double kMsPerHour = 3.6e6;

// 2^((to - from) / h) for each half-life.
std::array<double, kTrendWindows> Growth(int64_t from_ms, int64_t to_ms) {
  std::array<double, kTrendWindows> g;
  for (int k = 0; k < kTrendWindows; ++k) {
    g[k] = std::exp2(double(to_ms - from_ms) / (kTrendHalfLifeHours[k] * kMsPerHour));
  }
  return g;
}

// `x` as a float within float's range (never infinite).
float Clamped(double x) {
  return static_cast<float>(std::min(x, double(std::numeric_limits<float>::max())));
}

}  // namespace

void EngagementState::UserHistory::Add(uint64_t id, int64_t time_ms) {
  // Position of the new event: after every event at or after its time.
  int at = 0;
  while (at < size && times[at] >= time_ms) ++at;
  if (at >= kHistoryLength) return;  // older than everything kept
  const int last = std::min(size, kHistoryLength - 1);
  for (int i = last; i > at; --i) {
    ids[i] = ids[i - 1];
    times[i] = times[i - 1];
  }
  ids[at] = id;
  times[at] = time_ms;
  size = std::min(size + 1, kHistoryLength);
}

EngagementState::EngagementState(const Catalog& catalog, int64_t as_of_ms)
    : catalog_(catalog),
      reference_ms_(as_of_ms),
      counts_(size_t(catalog.num_videos()) * kTrendColumns, 0.f) {}

bool EngagementState::InBundle(const std::string& dir, FileSystem& fs) {
  for (const char* name : {kTrendingFile, kHistoryIdsFile, kHistoryTimesFile}) {
    auto exists = fs.Exists(BundlePath(dir, name));
    if (exists.ok() && *exists) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<EngagementState>> EngagementState::Load(
    const std::string& dir, const Catalog& catalog, int64_t as_of_ms, FileSystem& fs) {
  auto state = std::make_unique<EngagementState>(catalog, as_of_ms);
  int present = 0;
  for (const char* name : {kTrendingFile, kHistoryIdsFile, kHistoryTimesFile}) {
    ASSIGN_OR_RETURN(const bool exists, fs.Exists(BundlePath(dir, name)));
    present += exists ? 1 : 0;
  }
  if (present == 0) return state;
  if (present != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": holds only some of ", kTrendingFile, ", ", kHistoryIdsFile,
                     " and ", kHistoryTimesFile, " (a bundle has all three or none)"));
  }
  const std::string trending_path = BundlePath(dir, kTrendingFile);
  ASSIGN_OR_RETURN(NpyArray<float> trending, ReadNpy<float>(fs, trending_path, 2));
  if (trending.rows() != catalog.num_videos() || trending.cols() != kTrendColumns) {
    return absl::InvalidArgumentError(
        absl::StrCat(trending_path, ": shape [", trending.rows(), ", ", trending.cols(),
                     "], expected [", catalog.num_videos(), ", ", kTrendColumns,
                     "] (one row per video)"));
  }
  for (size_t i = 0; i < trending.data.size(); ++i) {
    if (trending.data[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(trending_path, ": row ", i / kTrendColumns, " column ",
                       i % kTrendColumns, " is negative (", trending.data[i], ")"));
    }
  }
  state->counts_ = std::move(trending.data);
  {
    std::unique_lock lock(state->mu_);
    state->RebuildTrendingLocked();
  }
  const std::string ids_path = BundlePath(dir, kHistoryIdsFile);
  const std::string times_path = BundlePath(dir, kHistoryTimesFile);
  ASSIGN_OR_RETURN(NpyArray<int64_t> ids, ReadNpy<int64_t>(fs, ids_path, 2));
  ASSIGN_OR_RETURN(NpyArray<int64_t> times, ReadNpy<int64_t>(fs, times_path, 2));
  for (const auto* a : {&ids, &times}) {
    if (a->rows() != catalog.num_users() || a->cols() != kHistoryLength) {
      return absl::InvalidArgumentError(
          absl::StrCat(a == &ids ? ids_path : times_path, ": shape [", a->rows(), ", ",
                       a->cols(), "], expected [", catalog.num_users(), ", ",
                       kHistoryLength, "] (one row per user)"));
    }
  }
  for (int32_t u = 0; u < catalog.num_users(); ++u) {
    UserHistory history;
    for (int i = 0; i < kHistoryLength; ++i) {
      const int64_t id = ids.data[size_t(u) * kHistoryLength + i];
      if (id < 0) continue;
      history.Add(uint64_t(id), times.data[size_t(u) * kHistoryLength + i]);
    }
    if (history.size > 0) state->history_[catalog.user_id(u)] = history;
  }
  return state;
}

absl::Status EngagementState::Write(const std::string& dir,
                                    absl::Span<const uint64_t> video_ids,
                                    absl::Span<const uint64_t> user_ids, int64_t at_ms,
                                    FileSystem& fs) const {
  const int64_t num_videos = int64_t(video_ids.size());
  const int64_t num_users = int64_t(user_ids.size());
  std::vector<float> trending(size_t(num_videos) * kTrendColumns, 0.f);
  std::vector<int64_t> ids(size_t(num_users) * kHistoryLength, -1);
  std::vector<int64_t> times(ids.size(), 0);
  {
    std::shared_lock lock(mu_);
    const auto scale = Growth(at_ms, reference_ms_);
    for (int64_t row = 0; row < num_videos; ++row) {
      const int64_t slot = FindVideoSlot(video_ids[row]);
      if (slot < 0) continue;
      for (int c = 0; c < kTrendColumns; ++c) {
        trending[size_t(row) * kTrendColumns + c] =
            Clamped(counts_[size_t(slot) * kTrendColumns + c] * scale[c % kTrendWindows]);
      }
    }
    for (int64_t u = 0; u < num_users; ++u) {
      auto it = history_.find(user_ids[u]);
      if (it == history_.end()) continue;
      for (int i = 0; i < it->second.size; ++i) {
        ids[size_t(u) * kHistoryLength + i] = int64_t(it->second.ids[i]);
        times[size_t(u) * kHistoryLength + i] = it->second.times[i];
      }
    }
  }
  RETURN_IF_ERROR(WriteNpy<float>(fs, BundlePath(dir, kTrendingFile), trending,
                                  {num_videos, kTrendColumns}));
  RETURN_IF_ERROR(WriteNpy<int64_t>(fs, BundlePath(dir, kHistoryIdsFile), ids,
                                    {num_users, kHistoryLength}));
  return WriteNpy<int64_t>(fs, BundlePath(dir, kHistoryTimesFile), times,
                           {num_users, kHistoryLength});
}

std::unique_ptr<EngagementState> EngagementState::Clone() const {
  std::shared_lock lock(mu_);
  auto copy = std::make_unique<EngagementState>(catalog_, reference_ms_);
  copy->counts_ = counts_;
  copy->extra_slots_ = extra_slots_;
  copy->history_ = history_;
  copy->extra_ids_ = extra_ids_;
  copy->trending_ = trending_;
  copy->recorded_ = recorded_;
  copy->logged_sequence_ = logged_sequence_;
  return copy;
}

int64_t EngagementState::FindVideoSlot(uint64_t id) const {
  if (auto row = catalog_.VideoRow(id)) return *row;
  auto it = extra_slots_.find(id);
  return it == extra_slots_.end() ? -1 : it->second;
}

int64_t EngagementState::VideoSlotLocked(uint64_t id) {
  if (auto row = catalog_.VideoRow(id)) return *row;
  auto [it, inserted] =
      extra_slots_.try_emplace(id, int64_t(counts_.size() / kTrendColumns));
  if (inserted) {
    counts_.resize(counts_.size() + kTrendColumns, 0.f);
    extra_ids_.push_back(id);
  }
  return it->second;
}

void EngagementState::RebaseLocked(int64_t reference_ms) {
  const auto scale = Growth(reference_ms, reference_ms_);
  for (size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] = Clamped(counts_[i] * scale[(i % kTrendColumns) % kTrendWindows]);
  }
  reference_ms_ = reference_ms;
  // Scaling keeps the order up to rounding; sorted again to be exact.
  RebuildTrendingLocked();
}

void EngagementState::Record(absl::Span<const EngagementEvent> events) {
  std::unique_lock lock(mu_);
  RecordLocked(events);
}

bool EngagementState::RecordLogged(uint64_t sequence,
                                   absl::Span<const EngagementEvent> events) {
  std::unique_lock lock(mu_);
  if (sequence <= logged_sequence_) return false;
  logged_sequence_ = sequence;
  RecordLocked(events);
  return true;
}

uint64_t EngagementState::logged_sequence() const {
  std::shared_lock lock(mu_);
  return logged_sequence_;
}

bool EngagementState::TrendingBefore(int64_t a, float va, int64_t b, float vb) {
  return va != vb ? va > vb : a < b;
}

void EngagementState::RebuildTrendingLocked() {
  std::vector<int64_t> order;
  const int64_t slots = int64_t(counts_.size() / kTrendColumns);
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (TrendingValue(slot) > 0) order.push_back(slot);
  }
  auto better = [&](int64_t a, int64_t b) {
    return TrendingBefore(a, TrendingValue(a), b, TrendingValue(b));
  };
  if (int(order.size()) > kTrendingTop) {
    std::nth_element(order.begin(), order.begin() + kTrendingTop, order.end(), better);
    order.resize(kTrendingTop);
  }
  std::sort(order.begin(), order.end(), better);
  trending_ = std::move(order);
}

void EngagementState::RaiseTrendingLocked(int64_t slot, float old_value) {
  const float value = TrendingValue(slot);
  // Where (old_value, slot) sits, if the slot is on the list.
  auto at = std::lower_bound(
      trending_.begin(), trending_.end(), slot, [&](int64_t member, int64_t) {
        // The slot itself still sits at its old count.
        const float v = member == slot ? old_value : TrendingValue(member);
        return TrendingBefore(member, v, slot, old_value);
      });
  size_t pos;
  if (at != trending_.end() && *at == slot) {
    pos = size_t(at - trending_.begin());
  } else {
    if (int(trending_.size()) >= kTrendingTop &&
        !TrendingBefore(slot, value, trending_.back(), TrendingValue(trending_.back()))) {
      return;  // still below the list
    }
    trending_.push_back(slot);
    pos = trending_.size() - 1;
  }
  // Its count only rose: move it up.
  while (pos > 0 && TrendingBefore(slot, value, trending_[pos - 1],
                                   TrendingValue(trending_[pos - 1]))) {
    trending_[pos] = trending_[pos - 1];
    --pos;
  }
  trending_[pos] = slot;
  if (int(trending_.size()) > kTrendingTop) trending_.pop_back();
}

void EngagementState::RecordLocked(absl::Span<const EngagementEvent> events) {
  for (const EngagementEvent& e : events) {
    if (double(e.time_ms - reference_ms_) > kRebaseHours * kMsPerHour) {
      RebaseLocked(e.time_ms);
    }
    const int64_t slot = VideoSlotLocked(e.video_id);
    const float old_value = TrendingValue(slot);
    const auto weight = Growth(reference_ms_, e.time_ms);
    float* c = &counts_[size_t(slot) * kTrendColumns];
    for (int k = 0; k < kTrendWindows; ++k) {
      c[k] = Clamped(c[k] + weight[k]);
      if (e.positive) c[kTrendWindows + k] = Clamped(c[kTrendWindows + k] + weight[k]);
    }
    history_[e.user_id].Add(e.video_id, e.time_ms);
    ++recorded_;
    if (e.positive) RaiseTrendingLocked(slot, old_value);
  }
}

int64_t EngagementState::recorded() const {
  std::shared_lock lock(mu_);
  return recorded_;
}

int64_t EngagementState::extra_videos() const {
  std::shared_lock lock(mu_);
  return int64_t(extra_slots_.size());
}

int64_t EngagementState::users_with_history() const {
  std::shared_lock lock(mu_);
  return int64_t(history_.size());
}

EngagementState::Reader::Reader(const EngagementState* state, int64_t now_ms)
    : state_(state), now_ms_(now_ms) {
  if (state_ == nullptr) return;
  state_->mu_.lock_shared();
  scale_ = Growth(now_ms, state_->reference_ms_);
}

EngagementState::Reader::~Reader() {
  if (state_ != nullptr) state_->mu_.unlock_shared();
}

void EngagementState::Reader::CountsAt(int64_t slot, float* out) const {
  if (slot < 0) {
    std::fill(out, out + kTrendColumns, 0.f);
    return;
  }
  const float* c = &state_->counts_[size_t(slot) * kTrendColumns];
  for (int i = 0; i < kTrendColumns; ++i)
    out[i] = Clamped(c[i] * scale_[i % kTrendWindows]);
}

void EngagementState::Reader::Trending(const CatalogView& view, int32_t row,
                                       float* out) const {
  if (state_ == nullptr) {
    std::fill(out, out + kTrendColumns, 0.f);
    return;
  }
  if (!view.in_delta(row) && &view.base() == &state_->catalog_) {
    CountsAt(row, out);
    return;
  }
  CountsAt(state_->FindVideoSlot(view.video_id(row)), out);
}

void EngagementState::Reader::PrefetchTrending(const CatalogView& view,
                                               int32_t row) const {
  if (state_ == nullptr || view.in_delta(row) || &view.base() != &state_->catalog_)
    return;
  __builtin_prefetch(&state_->counts_[size_t(row) * kTrendColumns]);
}

void EngagementState::Reader::TrendingOf(uint64_t video_id, float* out) const {
  if (state_ == nullptr) {
    std::fill(out, out + kTrendColumns, 0.f);
    return;
  }
  CountsAt(state_->FindVideoSlot(video_id), out);
}

int EngagementState::Reader::HistoryMean(const CatalogView& view, uint64_t user_id,
                                         float* mean) const {
  const int dim = view.dim();
  std::fill(mean, mean + dim, 0.f);
  if (state_ == nullptr) return 0;
  auto it = state_->history_.find(user_id);
  if (it == state_->history_.end()) return 0;
  const UserHistory& h = it->second;
  float weight = 1, total = 0;
  int used = 0;
  for (int i = 0; i < h.size; ++i) {
    if (h.times[i] >= now_ms_) continue;  // strictly before the request
    const std::optional<int32_t> row = view.VideoRow(h.ids[i]);
    if (row.has_value()) {
      const float* v = view.video_embedding(*row);
      for (int j = 0; j < dim; ++j) mean[j] += weight * v[j];
      total += weight;
      ++used;
    }
    weight *= kHistoryDecay;
  }
  if (total > 0) {
    for (int j = 0; j < dim; ++j) mean[j] /= total;
  }
  return used;
}

std::vector<uint64_t> EngagementState::Reader::History(uint64_t user_id) const {
  std::vector<uint64_t> out;
  if (state_ == nullptr) return out;
  auto it = state_->history_.find(user_id);
  if (it == state_->history_.end()) return out;
  for (int i = 0; i < it->second.size; ++i) {
    if (it->second.times[i] < now_ms_) out.push_back(it->second.ids[i]);
  }
  return out;
}

}  // namespace feedrank
