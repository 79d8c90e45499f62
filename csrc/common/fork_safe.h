#pragma once

// Process-wide caches whose mutex a fork() must not copy while held.
//
// fork() copies only the calling thread; a mutex that another thread held at that moment stays
// locked in the child forever, and the child's first use of the cache deadlocks (a DataLoader
// worker forked while another thread freed a large output, say). hold_across_fork registers
// pthread_atfork handlers that take the mutex before fork() (waiting for any holder to finish)
// and release it after, in the parent and in the child, as glibc does for malloc's own locks.

#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace msrcnn {

// Mutex: a function returning the cache's mutex. Call once, after the cache exists.
template <std::mutex& (*Mutex)()>
void hold_across_fork() {
#if defined(__unix__) || defined(__APPLE__)
  pthread_atfork([] { Mutex().lock(); }, [] { Mutex().unlock(); }, [] { Mutex().unlock(); });
#endif
}

}  // namespace msrcnn
