// Benchmark: identity creation time (RSA key pair + self-signed certificate).
// Usage: bench_identity [RUNS=10]
#include "dht/identity.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    int runs = argc > 1 ? std::atoi(argv[1]) : 10;
    for (unsigned bits : {2048u, 3072u, 4096u}) {
        std::vector<double> ms;
        for (int i = 0; i < runs; ++i) {
            auto start = std::chrono::steady_clock::now();
            auto id = parley::dht::Identity::generate("bench", bits);
            (void)id.privateKeyPem("passphrase");
            ms.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count());
        }
        std::sort(ms.begin(), ms.end());
        std::printf("identity RSA-%u (generate + encrypted PKCS#8 export), %d runs: p50 %.0f ms, "
                    "min %.0f ms, max %.0f ms\n",
                    bits, runs, ms[ms.size() / 2], ms.front(), ms.back());
    }
    return 0;
}
