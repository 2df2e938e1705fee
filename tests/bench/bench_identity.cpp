// Benchmark: identity creation time (RSA key pair + self-signed certificate), and the cost
// of writing the key encrypted (PBES2 key derivation). Usage: bench_identity [RUNS=10]
#include "dht/identity.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {
double msSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
}
} // namespace

int main(int argc, char** argv) {
    int runs = argc > 1 ? std::atoi(argv[1]) : 10;
    for (unsigned bits : {2048u, 3072u, 4096u}) {
        std::vector<double> gen, exp;
        for (int i = 0; i < runs; ++i) {
            auto start = std::chrono::steady_clock::now();
            auto id = parley::dht::Identity::generate("bench", bits);
            gen.push_back(msSince(start));
            start = std::chrono::steady_clock::now();
            (void)id.privateKeyPem("passphrase");
            exp.push_back(msSince(start));
        }
        std::sort(gen.begin(), gen.end());
        std::sort(exp.begin(), exp.end());
        std::printf("identity RSA-%u, %d runs: generate p50 %.0f ms (min %.0f, max %.0f); "
                    "encrypted PKCS#8 export p50 %.0f ms\n",
                    bits, runs, gen[gen.size() / 2], gen.front(), gen.back(), exp[exp.size() / 2]);
    }
    return 0;
}
