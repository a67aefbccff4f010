// Loaded with LD_PRELOAD by process_test: starts a thread before main, as
// OpenBLAS's pthread build does when libblas.so.3 is loaded. Such a thread
// never inherits a signal mask that main sets, so a SIGTERM the kernel hands
// to it must still reach serve's drain, not kill the process.
#include <pthread.h>
#include <unistd.h>

namespace {

void* Idle(void*) {
  while (true) ::pause();
  return nullptr;
}

__attribute__((constructor)) void StartEarlyThread() {
  pthread_t thread;
  if (pthread_create(&thread, nullptr, Idle, nullptr) == 0) pthread_detach(thread);
}

}  // namespace
