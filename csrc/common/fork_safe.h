#pragma once

// Process-wide caches whose mutex a fork() must not copy while held.
//
// fork() copies only the calling thread; a mutex that another thread held at that moment stays
// locked in the child forever, and the child's first use of the cache deadlocks (a DataLoader
// worker forked while another thread freed a large output, say). hold_across_fork registers
// pthread_atfork handlers that take the mutex before fork() (waiting for any holder to finish)
// and release it after, in the parent and in the child, as glibc does for malloc's own locks.

#include <chrono>
#include <mutex>
#include <thread>

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

// Holds the mutex for `seconds`: tests fork() meanwhile and check the child is not left with it
// held.
template <std::mutex& (*Mutex)()>
void hold_for_testing(double seconds) {
  std::lock_guard<std::mutex> lock(Mutex());
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

}  // namespace msrcnn
