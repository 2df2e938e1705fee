// TimerSet: the one-shot timers a manager starts on the fly (a retry, a ping's loss deadline),
// all cancelled by cancelAll() at stop. A "stopped" flag alone would leave them pending, each
// holding its captures until it fires (STYLE.md: a timer is cancelled by whoever owns it).
#pragma once

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>

namespace parley::dht {

class TimerSet {
public:
    using Timer = asio::steady_timer;
    explicit TimerSet(asio::io_context& io) : io_(io), live_(std::make_shared<Live>()) {}
    ~TimerSet() { cancelAll(); }
    TimerSet(const TimerSet&) = delete;
    TimerSet& operator=(const TimerSet&) = delete;

    // Runs `f` on the io thread after `delay`, unless cancelAll() comes first.
    void after(Timer::duration delay, std::function<void()> f) {
        auto timer = std::make_shared<Timer>(io_, delay);
        auto* key = timer.get();
        (*live_)[key] = timer;
        timer->async_wait(
            [weak = std::weak_ptr<Live>(live_), key, f = std::move(f)](const std::error_code& ec) {
                auto live = weak.lock();
                if (!live || !live->erase(key) || ec)
                    return; // cancelled (or the set is gone)
                f();
            });
    }
    void cancelAll() {
        auto live = std::move(*live_);
        live_->clear();
        for (auto& [key, timer] : live)
            timer->cancel();
    }
    std::size_t pending() const { return live_->size(); }

private:
    using Live = std::map<Timer*, std::shared_ptr<Timer>>;
    asio::io_context& io_;
    std::shared_ptr<Live> live_;
};

} // namespace parley::dht
