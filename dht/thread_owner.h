// ThreadOwner: says which thread owns a piece of state (DESIGN.md §2: one io_context thread
// owns a node's state) and, in builds with PARLEY_THREAD_CHECKS (debug and sanitizer builds),
// aborts with a message when another thread touches it.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace parley::dht {

class ThreadOwner {
public:
    // From now on the calling thread owns the state (the node's thread, once it runs).
    void bindToCurrentThread() { owner_.store(std::this_thread::get_id()); }
    void release() { owner_.store(std::thread::id{}); }
    // True when no thread is bound yet (set-up) or the caller is the owner.
    bool isOwner() const {
        auto owner = owner_.load();
        return owner == std::thread::id{} || owner == std::this_thread::get_id();
    }
    void check(const char* what) const {
#ifdef PARLEY_THREAD_CHECKS
        if (!isOwner()) {
            std::fprintf(stderr, "parley: %s touched from a thread that does not own it\n", what);
            std::abort();
        }
#else
        (void)what;
#endif
    }

private:
    std::atomic<std::thread::id> owner_{};
};

} // namespace parley::dht
