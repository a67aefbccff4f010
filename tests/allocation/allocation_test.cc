// The Ranker's contract: "a warm thread allocates nothing but the result's
// own vectors and strings, and nothing at all when the caller reuses its
// RankResult". This binary replaces malloc and friends (operator new and
// Eigen's aligned allocations go through them) with counting versions and
// checks that warm Rank calls of varying sizes — page size, exclude lists,
// deadline-shrunk reranks, cold starts, two bundles of different sizes —
// allocate nothing. Likewise ExperimentConfig::Assign with a reused
// Assignment, pinned or not.
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <random>
#include <thread>

#include "ranking/experiments.h"
#include "ranking/ranker.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
thread_local bool counting = false;
thread_local int64_t allocations = 0;
}  // namespace

extern "C" {
void* malloc(size_t n) {
  if (counting) ++allocations;
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  if (counting) ++allocations;
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  if (counting) ++allocations;
  return __libc_realloc(p, n);
}
void* memalign(size_t alignment, size_t n) {
  if (counting) ++allocations;
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  if (counting) ++allocations;
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  if (counting) ++allocations;
  *out = __libc_memalign(alignment, n);
  return *out == nullptr ? 12 /* ENOMEM */ : 0;
}
}

namespace feedrank {
namespace {

// Counts the allocations of `fn` on this thread.
template <typename Fn>
int64_t CountAllocations(Fn&& fn) {
  allocations = 0;
  counting = true;
  fn();
  counting = false;
  return allocations;
}

TEST(AllocationTest, TheCounterSeesOperatorNewAndMalloc) {
  EXPECT_GE(CountAllocations([] {
              int* volatile p = new int(1);
              delete p;
            }),
            1);
  EXPECT_GE(CountAllocations([] { std::vector<float> v(1000); }), 1);
  EXPECT_EQ(CountAllocations([] {}), 0);
}

struct Case {
  std::unique_ptr<Ranker> ranker;
  std::vector<std::vector<uint64_t>> excludes;
};

TEST(AllocationTest, WarmRankCallsOfVaryingSizesAllocateNothing) {
  testing::FakeClock clock;  // a fixed time: budgets are decided by the costs
  std::vector<std::shared_ptr<const Bundle>> bundles = {
      testing::MakeSmallBundle(testing::SmallSynth(6000, 300)),
      testing::MakeSmallBundle(testing::SmallSynth(900, 50, "ivf")),
      // The served model's shape (64 dims, 128 and 64 wide): Eigen's GEMM
      // blocking buffers must fit its stack allowance.
      testing::MakeSmallBundle([] {
        SynthOptions o = testing::SmallSynth(4000, 100, "flat");
        o.dim = 64;
        o.hidden = {128, 64};
        return o;
      }()),
      // The engagement path: trending and history features, the trending
      // source, with events recorded below.
      testing::MakeSmallBundle([] {
        SynthOptions o = testing::SmallSynth(3000, 100);
        o.engagement_features = true;
        return o;
      }())};
  {
    const Bundle& b = *bundles.back();
    ASSERT_TRUE(b.features.uses_engagement());
    std::vector<EngagementEvent> events;
    for (int i = 0; i < 2000; ++i) {
      events.push_back({b.catalog->user_id(i % b.catalog->num_users()),
                        b.catalog->video_id((i * 7919) % b.catalog->num_videos()),
                        1793491200000 - int64_t(i) * 1000, i % 3 != 0});
    }
    b.engagement->Record(events);
  }
  std::vector<Case> cases;
  std::mt19937_64 rng(5);
  // Each bundle ranked in float, and the served model's shape in bf16 too
  // (params.scoring_precision) where the CPU has it.
  std::vector<std::pair<std::shared_ptr<const Bundle>, RankingConfig>> rankers;
  for (const auto& bundle : bundles) rankers.push_back({bundle, RankingConfig()});
  if (bf16::Supported()) {
    RankingConfig bf16_config;
    bf16_config.mutable_params()->set_scoring_precision("bf16");
    rankers.push_back({bundles[2], bf16_config});
  }
  for (const auto& [bundle, config] : rankers) {
    ASSERT_NE(bundle, nullptr);
    auto options = ResolveOptions(config, bundle->model->objectives());
    ASSERT_TRUE(options.ok());
    // 2 us per row: a 500 us budget reranks ~150 of the candidates.
    auto ranker =
        Ranker::Create(bundle, RankerOptions{*options, RankerCosts{2000, 0, 0}, &clock});
    ASSERT_TRUE(ranker.ok());
    Case c{*std::move(ranker), {}};
    const Catalog& catalog = *bundle->catalog;
    for (int size : {0, 10, 63, 200, 1500}) {
      std::vector<uint64_t>& ids = c.excludes.emplace_back();
      for (int i = 0; i < size; ++i)
        ids.push_back(catalog.video_id(rng() % catalog.num_videos()));
    }
    cases.push_back(std::move(c));
  }
  RankResult result;
  auto run_all = [&](bool check) {
    int64_t total = 0;
    for (int round = 0; round < 3; ++round) {
      for (Case& c : cases) {
        const Catalog& catalog = *c.ranker->bundle().catalog;
        for (int count : {1, 20, 200}) {
          for (const std::vector<uint64_t>& exclude : c.excludes) {
            for (int64_t budget_us : {int64_t{-1}, int64_t{500}, int64_t{50}}) {
              for (bool cold : {false, true}) {
                RankRequest request;
                request.user_id =
                    cold ? 99999999999ull : catalog.user_id(rng() % catalog.num_users());
                request.count = count;
                request.exclude_ids = exclude;
                request.context.now_ms = 1793491200000;
                if (budget_us >= 0) {
                  request.deadline = clock.Now() + std::chrono::microseconds(budget_us);
                }
                absl::Status status;
                const int64_t n =
                    CountAllocations([&] { status = c.ranker->Rank(request, &result); });
                EXPECT_TRUE(status.ok()) << status;
                if (check) {
                  EXPECT_EQ(n, 0) << "count " << count << " exclude " << exclude.size()
                                  << " budget " << budget_us << "us cold " << cold
                                  << " catalogue " << catalog.num_videos();
                }
                total += n;
              }
            }
          }
        }
      }
    }
    return total;
  };
  // A cold thread does allocate (the counter sees the ranker's buffers).
  std::thread([&] {
    RankRequest request;
    request.user_id = cases[0].ranker->bundle().catalog->user_id(0);
    RankResult fresh;
    EXPECT_GT(CountAllocations(
                  [&] { ASSERT_TRUE(cases[0].ranker->Rank(request, &fresh).ok()); }),
              0);
  }).join();
  run_all(false);  // warm-up: every buffer reaches its largest size
  EXPECT_EQ(run_all(true), 0);
  // The shrunk and skipped paths ran (the budget is what varied).
  RankRequest request;
  request.user_id = cases[0].ranker->bundle().catalog->user_id(0);
  request.deadline = clock.Now() + std::chrono::microseconds(500);
  ASSERT_TRUE(cases[0].ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.has_cause(DegradeCause::kRerankShrunk));
}

TEST(AllocationTest, AssignWithAReusedAssignmentAllocatesNothing) {
  auto proto = ParseConfig(R"pb(
    allow_pinning: true
    layers {
      name: "ranking"
      salt: "ranking-1"
      experiments {
        name: "beam"
        ranges { begin: 0 end: 3000 }
        arms {
          name: "a"
          ranges { begin: 0 end: 1000 }
          overrides { max_count: 100 }
        }
        arms {
          name: "b"
          ranges { begin: 1000 end: 3000 }
          overrides { max_count: 300 }
        }
      }
    }
    layers {
      name: "page"
      salt: "page-1"
      experiments {
        name: "cap"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "p0"
          ranges { begin: 0 end: 5000 }
          overrides { creator_cap: 0 }
        }
        arms {
          name: "p1"
          ranges { begin: 5000 end: 10000 }
          overrides { creator_cap: 5 }
        }
      }
    }
  )pb");
  ASSERT_TRUE(proto.ok()) << proto.status();
  auto config = ExperimentConfig::Create(*proto, {"click", "like"});
  ASSERT_TRUE(config.ok()) << config.status();
  const std::vector<ArmPin> pins = {{"ranking", "b"}}, none;
  Assignment out;
  ASSERT_TRUE(config->Assign(0, &out).ok());  // sizes out.arms
  int64_t sum = 0;
  EXPECT_EQ(CountAllocations([&] {
              for (uint64_t u = 0; u < 10000; ++u) {
                if (!config->Assign(u, u % 2 ? pins : none, &out).ok()) {
                  sum = -1;
                  return;
                }
                sum += out.options->max_count;
              }
            }),
            0);
  EXPECT_GT(sum, 0);
}

}  // namespace
}  // namespace feedrank
