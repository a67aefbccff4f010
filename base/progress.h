// ProgressLog: a progress line for long offline work (index builds,
// training), at most every 5 seconds and once at the end.
#ifndef FEEDRANK_BASE_PROGRESS_H_
#define FEEDRANK_BASE_PROGRESS_H_

#include <cstdint>
#include <string>

namespace feedrank {

class ProgressLog {
 public:
  explicit ProgressLog(std::string what);
  // Reports `done` of `total` units; logs when due.
  void operator()(int64_t done, int64_t total);

 private:
  std::string what_;
  int64_t start_ns_;
  int64_t last_ns_;
};

}  // namespace feedrank

#endif  // FEEDRANK_BASE_PROGRESS_H_
