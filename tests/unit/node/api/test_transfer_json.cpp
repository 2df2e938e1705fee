// The control API's JSON of transfers and their events: the shapes `parley share`,
// `parley transfers` and scripts read.
#include "node/api/transfer_methods.h"

#include <catch2/catch.hpp>

using namespace parley;
using nlohmann::json;

namespace {

dht::ContactId someId(std::uint8_t fill) {
    std::array<std::uint8_t, 32> bytes{};
    bytes.fill(fill);
    return dht::ContactId(bytes);
}

node::TransferSummary someTransfer() {
    node::TransferSummary t;
    t.id.fill(0xab);
    t.contact = someId(5);
    t.outgoing = false;
    t.state = "transferring";
    t.name = "photos and 2 more";
    t.message = "from the trip";
    t.files = 12;
    t.totalBytes = 5'000'000'000ull;
    t.doneBytes = 1'250'000'000ull;
    t.rateBytesPerS = 85.5e6;
    t.dest = "/home/me/Downloads/parley";
    t.createdMs = 1700000000000;
    t.updatedMs = 1700000005000;
    t.problems = {{"photos/a.jpg", "cannot write: No space left on device"}};
    t.moreProblems = 3;
    return t;
}

} // namespace

TEST_CASE("api: a transfer's summary") {
    auto j = node::api::toJson(someTransfer());
    std::string id;
    for (int i = 0; i < 16; ++i)
        id += "ab";
    CHECK(j ==
          json{{"id", id},
               {"contact", someId(5).toHex()},
               {"direction", "in"},
               {"state", "transferring"},
               {"reason", ""},
               {"name", "photos and 2 more"},
               {"message", "from the trip"},
               {"files", 12},
               {"bytes", 5'000'000'000ull},
               {"done", 1'250'000'000ull},
               {"rate", 85.5e6},
               {"dest", "/home/me/Downloads/parley"},
               {"created_ms", 1700000000000},
               {"updated_ms", 1700000005000},
               {"problems", json::array({{{"path", "photos/a.jpg"},
                                          {"reason", "cannot write: No space left on device"}}})},
               {"more_problems", 3}});

    node::TransferSummary out;
    out.outgoing = true;
    out.state = "declined";
    out.reason = "no room";
    auto k = node::api::toJson(out);
    CHECK(k["direction"] == "out");
    CHECK(k["reason"] == "no room");
    CHECK(k["id"] == std::string(32, '0'));
    CHECK(k["problems"] == json::array());
    CHECK(k["more_problems"] == 0);
    CHECK(node::api::toJson(std::vector<node::TransferSummary>{out, out}).size() == 2);
}

TEST_CASE("api: transfer events are the summary with a type") {
    node::TransferEvent e;
    e.transfer = someTransfer();
    auto summary = node::api::toJson(e.transfer);
    for (auto [kind, type] : {std::pair{node::TransferEvent::Kind::offered, "transfer.offered"},
                              std::pair{node::TransferEvent::Kind::progress, "transfer.progress"},
                              std::pair{node::TransferEvent::Kind::state, "transfer.state"}}) {
        e.kind = kind;
        auto j = node::api::toJson(e);
        CHECK(j["type"] == type);
        j.erase("type");
        CHECK(j == summary);
    }
}

TEST_CASE("api: what an offer skipped") {
    std::vector<node::transfer::Skipped> skipped{{"photos/link", "symbolic link"},
                                                 {"photos/fifo", "FIFO"}};
    CHECK(node::api::toJson(skipped) ==
          json::parse(R"([{"path": "photos/link", "reason": "symbolic link"},
                          {"path": "photos/fifo", "reason": "FIFO"}])"));
    CHECK(node::api::toJson(std::vector<node::transfer::Skipped>{}) == json::array());
}
