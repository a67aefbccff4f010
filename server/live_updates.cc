#include "server/live_updates.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/files.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/status_macros.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

VideoUpsert FromProto(const v1::VideoUpdate& v, int64_t now_ms) {
  VideoUpsert u;
  u.id = v.id();
  u.embedding.assign(v.embedding().begin(), v.embedding().end());
  u.creator_id = v.creator_id();
  u.duration_ms = v.duration_ms();
  u.upload_time_ms = v.upload_time_ms() == 0 ? now_ms : v.upload_time_ms();
  u.popularity = v.popularity();
  return u;
}

UserUpsert FromProto(const v1::UserUpdate& u) {
  UserUpsert out;
  out.id = u.id();
  out.embedding.assign(u.embedding().begin(), u.embedding().end());
  out.activity = u.activity();
  return out;
}

void ToProto(const VideoUpsert& u, v1::VideoUpdate* v) {
  v->set_id(u.id);
  v->mutable_embedding()->Assign(u.embedding.begin(), u.embedding.end());
  v->set_creator_id(u.creator_id);
  v->set_duration_ms(u.duration_ms);
  v->set_upload_time_ms(u.upload_time_ms);
  v->set_popularity(u.popularity);
}

void ToProto(const UserUpsert& u, v1::UserUpdate* v) {
  v->set_id(u.id);
  v->mutable_embedding()->Assign(u.embedding.begin(), u.embedding.end());
  v->set_activity(u.activity);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LiveUpdates>> LiveUpdates::Open(const LiveOptions& options,
                                                               const Env& env,
                                                               FileSystem* fs) {
  if (options.compact_threshold < 0) {
    return absl::InvalidArgumentError("compaction threshold must be >= 0");
  }
  std::unique_ptr<LiveUpdates> live(new LiveUpdates(options, env));
  WalOptions wal;
  wal.dir = options.wal_dir;
  wal.sync = options.sync;
  wal.sync_interval = options.sync_interval;
  LiveUpdates* self = live.get();
  auto replay = [self](uint64_t seq, absl::string_view payload) -> absl::Status {
    v1::LiveUpdateRecord record;
    if (!record.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("update log record ", seq,
                       " passed its checksum but is not a LiveUpdateRecord (not written "
                       "by feedrank)"));
    }
    MutexLock lock(&self->mu_);
    self->AddRecord(seq, record);
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(live->wal_, WriteAheadLog::Open(wal, fs, replay, &live->recovery_));
  const WalRecovery& r = live->recovery_;
  LogInfo("update log %s (sync %s): replayed %d records (%d bytes) from %d segments%s",
          options.wal_dir, WalSyncName(options.sync), r.records, r.bytes_kept, r.segments,
          r.bytes_cut == 0 && r.records_voided == 0
              ? std::string()
              : absl::StrCat("; cut ", r.bytes_cut, " bytes of torn or corrupt tail, ",
                             r.records_voided, " refused records voided"));
  for (const std::string& cut : r.cuts) LogWarning("update log: %s", cut);
  return live;
}

bool LiveUpdates::Holds(const Bundle& bundle, uint64_t sequence, int64_t unix_ms) {
  if (bundle.manifest.live_sequence() > 0) {
    return sequence <= bundle.manifest.live_sequence();
  }
  return bundle.manifest.data_time_ms() > 0 && unix_ms <= bundle.manifest.data_time_ms();
}

EngagementEvent FromProto(const v1::EngagementEvent& e) {
  return EngagementEvent{e.user_id(), e.video_id(), e.time_ms(), e.positive()};
}

void LiveUpdates::AddRecord(uint64_t sequence, const v1::LiveUpdateRecord& record) {
  if (record.events_size() > 0) {
    LoggedEvents logged{sequence, {}};
    logged.events.reserve(record.events_size());
    for (const v1::EngagementEvent& e : record.events()) {
      logged.events.push_back(FromProto(e));
    }
    pending_events_ += record.events_size();
    events_.push_back(std::move(logged));
  }
  for (const v1::VideoUpdate& v : record.videos()) {
    Op& op = videos_[v.id()];
    op.sequence = sequence;
    op.unix_ms = record.unix_ms();
    op.deleted = false;
    op.video = FromProto(v, record.unix_ms());
  }
  for (uint64_t id : record.deletes()) {
    Op& op = videos_[id];
    op.sequence = sequence;
    op.unix_ms = record.unix_ms();
    op.deleted = true;
    op.video = VideoUpsert();
  }
  for (const v1::UserUpdate& u : record.users()) {
    UserOp& op = users_[u.id()];
    op.sequence = sequence;
    op.unix_ms = record.unix_ms();
    op.user = FromProto(u);
  }
  applied_sequence_ = std::max(applied_sequence_, sequence);
  last_update_ms_ = std::max(last_update_ms_, record.unix_ms());
}

void LiveUpdates::AddOps(const v1::LiveOps& ops) {
  // Merged by sequence: what the log holds is newer than a bundle's copy.
  for (const v1::LiveOp& op : ops.ops()) {
    if (op.has_user()) {
      UserOp& u = users_[op.user().id()];
      if (u.sequence > op.sequence()) continue;
      u.sequence = op.sequence();
      u.unix_ms = op.unix_ms();
      u.user = FromProto(op.user());
      continue;
    }
    const uint64_t id = op.has_video() ? op.video().id() : op.delete_id();
    auto [it, inserted] = videos_.try_emplace(id);
    if (!inserted && it->second.sequence > op.sequence()) continue;
    it->second.sequence = op.sequence();
    it->second.unix_ms = op.unix_ms();
    it->second.deleted = !op.has_video();
    it->second.video =
        op.has_video() ? FromProto(op.video(), op.unix_ms()) : VideoUpsert();
    applied_sequence_ = std::max(applied_sequence_, op.sequence());
  }
}

bool LiveUpdates::HoldsEvent(const Bundle& bundle, uint64_t sequence,
                             const EngagementEvent& event) {
  if (bundle.manifest.live_sequence() > 0) {
    return sequence <= bundle.manifest.live_sequence();
  }
  return bundle.manifest.data_time_ms() > 0 &&
         event.time_ms <= bundle.manifest.data_time_ms();
}

int64_t LiveUpdates::RecordNotHeld(const Bundle& bundle, uint64_t sequence,
                                   const std::vector<EngagementEvent>& events) {
  std::vector<EngagementEvent> newer;
  for (const EngagementEvent& e : events) {
    if (!HoldsEvent(bundle, sequence, e)) newer.push_back(e);
  }
  return bundle.engagement->RecordLogged(sequence, newer) ? int64_t(newer.size()) : 0;
}

void LiveUpdates::DropHeldEvents(const Bundle& bundle, size_t from) {
  for (size_t i = from; i < events_.size(); ++i) {
    LoggedEvents& logged = events_[i];
    const size_t before = logged.events.size();
    logged.events.erase(std::remove_if(logged.events.begin(), logged.events.end(),
                                       [&](const EngagementEvent& e) {
                                         return HoldsEvent(bundle, logged.sequence, e);
                                       }),
                        logged.events.end());
    pending_events_ -= int64_t(before - logged.events.size());
  }
  events_.erase(std::remove_if(events_.begin() + from, events_.end(),
                               [](const LoggedEvents& l) { return l.events.empty(); }),
                events_.end());
}

int64_t LiveUpdates::ReplayEvents(const Bundle& bundle) {
  int64_t replayed = 0;
  for (const LoggedEvents& logged : events_) {
    replayed += RecordNotHeld(bundle, logged.sequence, logged.events);
  }
  return replayed;
}

absl::Status LiveUpdates::Publish(const std::shared_ptr<const Bundle>& bundle,
                                  FileSystem& fs, const StoreFn& store) {
  const uint64_t bundle_sequence = bundle->manifest.live_sequence();
  // A compacted bundle's ops, read before the lock.
  v1::LiveOps carried;
  bool have_carried = false;
  {
    MutexLock lock(&mu_);
    if (bundle_ != nullptr && bundle_->catalog == bundle->catalog) {
      store(live_->view());
      return absl::OkStatus();
    }
  }
  if (bundle_sequence > 0) {
    const std::string path = BundlePath(bundle->dir, kLiveUpdatesFile);
    ASSIGN_OR_RETURN(std::string data, ReadFileToString(fs, path, uint64_t{1} << 34));
    if (!carried.ParseFromString(data)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a LiveOps message (a compacted bundle's live updates)"));
    }
    have_carried = true;
  }
  MutexLock lock(&mu_);
  if (have_carried) {
    AddOps(carried);
    // A log that lost its records (or a new one) must not reuse sequences
    // the bundle holds.
    if (absl::Status s = wal_->AdvanceTo(bundle_sequence); !s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("update log cannot continue after sequence ", bundle_sequence,
                       " of bundle ", bundle->dir, ": ", s.message()));
    }
  }
  const bool pipeline = bundle_sequence == 0 && bundle->manifest.data_time_ms() > 0;
  UpdateBatch batch;
  int64_t held = 0;
  for (auto it = videos_.begin(); it != videos_.end();) {
    const Op& op = it->second;
    if (Holds(*bundle, op.sequence, op.unix_ms)) {
      ++held;
      // A pipeline bundle supersedes what it holds.
      if (pipeline) {
        videos_.erase(it++);
        continue;
      }
    } else if (op.deleted) {
      batch.deletes.push_back(it->first);
    } else {
      batch.upserts.push_back(op.video);
    }
    ++it;
  }
  for (auto it = users_.begin(); it != users_.end();) {
    if (Holds(*bundle, it->second.sequence, it->second.unix_ms)) {
      ++held;
      if (pipeline) {
        users_.erase(it++);
        continue;
      }
    } else {
      batch.users.push_back(it->second.user);
    }
    ++it;
  }
  // Deterministic views: the batch in id order.
  std::sort(batch.upserts.begin(), batch.upserts.end(),
            [](const VideoUpsert& a, const VideoUpsert& b) { return a.id < b.id; });
  std::sort(batch.deletes.begin(), batch.deletes.end());
  std::sort(batch.users.begin(), batch.users.end(),
            [](const UserUpsert& a, const UserUpsert& b) { return a.id < b.id; });
  const uint64_t version = live_ == nullptr ? 0 : live_->version() + 1;
  auto catalog = std::make_unique<LiveCatalog>(bundle->catalog, version);
  const size_t items = batch.upserts.size() + batch.deletes.size() + batch.users.size();
  if (items > 0) {
    ApplyStats stats;
    auto view = catalog->Apply(batch, &stats, std::numeric_limits<int64_t>::max());
    if (!view.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the live updates do not fit bundle ", bundle->dir, ": ",
                       view.status().message()));
    }
  }
  const int64_t events = ReplayEvents(*bundle);
  if (pipeline) DropHeldEvents(*bundle, 0);
  LogInfo(
      "live: bundle %s serves with %d live updates it does not hold (%d upserts, %d "
      "deletes, %d users) and %d engagement events; %d updates it holds",
      bundle->manifest.version(), items, batch.upserts.size(), batch.deletes.size(),
      batch.users.size(), events, held);
  bundle_ = bundle;
  live_ = std::move(catalog);
  store(live_->view());
  return absl::OkStatus();
}

absl::Status LiveUpdates::CheckEvents(const v1::LiveUpdateRecord& record,
                                      const CatalogView& view, int64_t now_ms) {
  if (record.events_size() > kMaxEventsPerBatch) {
    return absl::InvalidArgumentError(absl::StrCat("a batch holds at most ",
                                                   kMaxEventsPerBatch, " events, not ",
                                                   record.events_size()));
  }
  for (int i = 0; i < record.events_size(); ++i) {
    const v1::EngagementEvent& e = record.events(i);
    if (!view.VideoRow(e.video_id()).has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event ", i, ": video ", e.video_id(), " is not in the catalogue"));
    }
    if (e.time_ms() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("event ", i, " (video ", e.video_id(), "): time_ms is ",
                       e.time_ms(), ", must be > 0 (Unix milliseconds)"));
    }
    if (e.time_ms() > now_ms + kMaxEventLeadMs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event ", i, " (video ", e.video_id(), "): time_ms ", e.time_ms(), " is ",
          (e.time_ms() - now_ms) / 1000, " s ahead of the server's clock (at most ",
          kMaxEventLeadMs / 1000, " s)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LiveResult> LiveUpdates::Apply(const v1::LiveUpdateRecord& request,
                                              const StoreFn& store) {
  const int64_t now_ms = env_.clock->UnixMillis();
  MutexLock lock(&mu_);
  if (live_ == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  UpdateBatch batch;
  batch.upserts.reserve(request.videos_size());
  for (const v1::VideoUpdate& v : request.videos()) {
    batch.upserts.push_back(FromProto(v, now_ms));
  }
  batch.deletes.assign(request.deletes().begin(), request.deletes().end());
  for (const v1::UserUpdate& u : request.users()) batch.users.push_back(FromProto(u));
  const bool catalog_change =
      !batch.upserts.empty() || !batch.deletes.empty() || !batch.users.empty();
  // An events-only batch leaves the catalogue alone (an empty batch is
  // refused by Validate).
  if (catalog_change || request.events_size() == 0) {
    if (absl::Status status = live_->Validate(batch); !status.ok()) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return status;
    }
  }
  if (absl::Status status = CheckEvents(request, *live_->view(), now_ms); !status.ok()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return status;
  }
  v1::LiveUpdateRecord record = request;
  record.set_unix_ms(now_ms);
  // Upload times as applied, so a replay rebuilds the same view.
  for (int i = 0; i < record.videos_size(); ++i) {
    record.mutable_videos(i)->set_upload_time_ms(batch.upserts[i].upload_time_ms);
  }
  auto sequence = wal_->Append(record.SerializeAsString());
  if (!sequence.ok()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    log_failures_.fetch_add(1, std::memory_order_relaxed);
    LogError("live: batch refused, the update log cannot take it: %s",
             sequence.status().ToString());
    return absl::UnavailableError(
        absl::StrCat("the update log cannot take the batch (nothing was applied): ",
                     sequence.status().message()));
  }
  LiveResult result;
  std::shared_ptr<const CatalogView> served = live_->view();
  if (catalog_change) {
    auto view = live_->Apply(batch, &result.stats);
    if (!view.ok()) {
      // Validate passed, so this is a bug; the record is logged and will be
      // refused the same way on replay.
      return absl::InternalError(absl::StrCat(
          "batch ", *sequence, " logged but not applied: ", view.status().message()));
    }
    served = *view;
  }
  AddRecord(*sequence, record);
  if (record.events_size() > 0) {
    // Late events (at or before a pipeline bundle's data time) are its
    // already: logged, but not counted twice.
    result.events = RecordNotHeld(*bundle_, *sequence, events_.back().events);
    // A pipeline bundle supersedes what it holds (as at Publish).
    if (bundle_->manifest.live_sequence() == 0)
      DropHeldEvents(*bundle_, events_.size() - 1);
  }
  if (catalog_change) store(served);
  batches_.fetch_add(1, std::memory_order_relaxed);
  result.sequence = *sequence;
  result.catalog_version = served->version();
  return result;
}

void LiveUpdates::Status(v1::GetStatusResponse* status) const {
  MutexLock lock(&mu_);
  status->set_wal_dir(options_.wal_dir);
  status->set_wal_sync(WalSyncName(options_.sync));
  status->set_wal_last_sequence(wal_->last_seq());
  status->set_wal_bytes(wal_->bytes());
  status->set_pending_ops(videos_.size() + users_.size());
  status->set_last_update_unix_ms(last_update_ms_);
  status->set_compaction_threshold(options_.compact_threshold);
  status->set_compaction_event_threshold(options_.compact_event_threshold);
  status->set_pending_events(pending_events_);
  if (bundle_ != nullptr) status->set_events_recorded(bundle_->engagement->recorded());
  status->set_compactions(compactions_);
  *status->mutable_last_compaction() = last_compaction_;
  status->set_recovered_records(recovery_.records);
  status->set_recovered_bytes_cut(recovery_.bytes_cut);
  for (const std::string& cut : recovery_.cuts) status->add_recovery_cuts(cut);
  if (live_ != nullptr) {
    const CatalogView& view = *live_->view();
    status->set_catalog_version(view.version());
    status->set_base_videos(view.base().num_videos());
    status->set_live_videos(view.num_live_videos());
    status->set_delta_videos(live_->delta_size());
    status->set_tombstones(live_->tombstones());
    status->set_delta_users(live_->delta_users());
    status->set_bundle_sequence(bundle_->manifest.live_sequence());
    status->set_compaction_pending(CompactionDueLocked());
  }
}

bool LiveUpdates::CompactionDueLocked() const {
  if (live_ == nullptr) return false;
  return (options_.compact_threshold > 0 &&
          live_->delta_size() + live_->tombstones() + live_->delta_users() >=
              options_.compact_threshold) ||
         (options_.compact_event_threshold > 0 &&
          pending_events_ >= options_.compact_event_threshold);
}

bool LiveUpdates::CompactionDue() const {
  MutexLock lock(&mu_);
  return CompactionDueLocked();
}

absl::StatusOr<CompactionPlan> LiveUpdates::PlanCompaction() const {
  MutexLock lock(&mu_);
  if (live_ == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  CompactionPlan plan;
  plan.bundle = bundle_;
  plan.view = live_->view();
  plan.through_sequence = applied_sequence_;
  plan.engagement = bundle_->engagement->Clone();
  for (const auto& [id, op] : videos_) {
    v1::LiveOp* out = plan.ops.add_ops();
    out->set_sequence(op.sequence);
    out->set_unix_ms(op.unix_ms);
    if (op.deleted) {
      out->set_delete_id(id);
    } else {
      ToProto(op.video, out->mutable_video());
    }
  }
  for (const auto& [id, op] : users_) {
    v1::LiveOp* out = plan.ops.add_ops();
    out->set_sequence(op.sequence);
    out->set_unix_ms(op.unix_ms);
    ToProto(op.user, out->mutable_user());
  }
  return plan;
}

void LiveUpdates::FinishCompaction(const CompactionPlan& plan,
                                   const v1::CompactionInfo& info) {
  MutexLock lock(&mu_);
  if (info.error().empty()) {
    ++compactions_;
  } else {
    compaction_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  last_compaction_ = info;
  if (!info.error().empty() || bundle_ == nullptr ||
      bundle_->manifest.live_sequence() < plan.through_sequence) {
    return;  // the bundle that holds them is not served: keep the log
  }
  // The compacted bundle's engagement files hold these events.
  size_t folded = 0;  // events_ is in sequence order
  while (folded < events_.size() && events_[folded].sequence <= plan.through_sequence) {
    pending_events_ -= int64_t(events_[folded].events.size());
    ++folded;
  }
  events_.erase(events_.begin(), events_.begin() + folded);
  if (absl::Status s = wal_->TruncateBefore(plan.through_sequence + 1); !s.ok()) {
    LogWarning("live: update log not truncated after compaction (kept, harmless): %s",
               s.ToString());
  }
}

absl::Status WriteCompactedBundle(const CompactionPlan& plan, const std::string& dir,
                                  const std::string& version, int threads, int64_t now_ms,
                                  FileSystem& fs, const std::atomic<bool>* cancel) {
  const CatalogView& view = *plan.view;
  const Catalog& base = view.base();
  const int dim = view.dim();
  VideoColumns videos;
  const size_t live = static_cast<size_t>(view.num_live_videos());
  videos.ids.reserve(live);
  videos.embeddings.reserve(live * dim);
  for (int32_t row = 0; row < view.num_rows(); ++row) {
    if (!view.live(row)) continue;
    videos.ids.push_back(view.video_id(row));
    const float* e = view.video_embedding(row);
    videos.embeddings.insert(videos.embeddings.end(), e, e + dim);
    videos.creator_ids.push_back(view.creator_id(row));
    videos.duration_ms.push_back(view.duration_ms(row));
    videos.upload_time_ms.push_back(view.upload_time_ms(row));
    videos.popularity.push_back(view.popularity(row));
  }
  UserColumns users;
  const float* e;
  float activity;
  for (int32_t row = 0; row < base.num_users(); ++row) {
    const uint64_t id = base.user_id(row);
    if (view.FindDeltaUser(id, &e, &activity)) continue;
    users.ids.push_back(id);
    e = base.user_embedding(row);
    users.embeddings.insert(users.embeddings.end(), e, e + dim);
    users.activity.push_back(base.user_activity(row));
  }
  for (uint64_t id : view.DeltaUserIds()) {
    view.FindDeltaUser(id, &e, &activity);
    users.ids.push_back(id);
    users.embeddings.insert(users.embeddings.end(), e, e + dim);
    users.activity.push_back(activity);
  }
  BundleManifest manifest = plan.bundle->manifest;
  manifest.set_version(version);
  manifest.set_num_videos(videos.ids.size());
  manifest.set_num_users(users.ids.size());
  manifest.set_live_sequence(plan.through_sequence);
  manifest.set_created_by(absl::StrCat("feedrank compaction of bundle ",
                                       plan.bundle->manifest.version(),
                                       " through update ", plan.through_sequence));
  manifest.set_created_at_unix(now_ms / 1000);
  if (plan.engagement != nullptr) manifest.set_engagement_time_ms(now_ms);
  IndexSpec spec = manifest.index();
  ProgressLog progress(absl::StrCat("compaction: ", manifest.index().type(), " index"));
  ASSIGN_OR_RETURN(
      auto index,
      AnnIndex::Build(videos.embeddings.data(), static_cast<int64_t>(videos.ids.size()),
                      dim, &spec, std::ref(progress), threads, cancel));
  *manifest.mutable_index() = spec;
  const std::string ops = plan.ops.SerializeAsString();
  return WriteBundle(
      dir, manifest, videos, users, plan.bundle->model->tensors(), *index,
      /*stats=*/nullptr, fs, [&](const std::string& tmp) -> absl::Status {
        ASSIGN_OR_RETURN(auto file, fs.OpenForWrite(BundlePath(tmp, kLiveUpdatesFile)));
        RETURN_IF_ERROR(file->Append(ops));
        RETURN_IF_ERROR(file->Sync());
        RETURN_IF_ERROR(file->Close());
        if (plan.engagement == nullptr) return absl::OkStatus();
        return plan.engagement->Write(tmp, videos.ids, users.ids, now_ms, fs);
      });
}

}  // namespace feedrank
