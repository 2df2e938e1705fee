// ControlServer: JSON-RPC 2.0 framing, errors, async replies and events, on a real socket.
#include "node/api/control_server.h"
#include "support/test_support.h"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace parley;
using nlohmann::json;

namespace {

struct Client {
    explicit Client(const std::filesystem::path& path) {
        fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    ~Client() { ::close(fd); }
    void send(const std::string& text) {
        REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    }
    json line() {
        for (;;) {
            if (auto nl = buf.find('\n'); nl != std::string::npos) {
                auto l = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                return json::parse(l);
            }
            pollfd p{fd, POLLIN, 0};
            REQUIRE(::poll(&p, 1, 5000) == 1);
            char tmp[4096];
            auto n = ::read(fd, tmp, sizeof tmp);
            REQUIRE(n > 0);
            buf.append(tmp, static_cast<std::size_t>(n));
        }
    }
    int fd;
    std::string buf;
};

struct Server {
    Server() : server(io, dir.path / "control.sock") {}
    void run() {
        server.start();
        thread = std::thread([this] { io.run(); });
    }
    ~Server() {
        asio::post(io, [this] { server.stop(); });
        work.reset();
        thread.join();
    }
    test::TempDir dir;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    node::ControlServer server;
    std::thread thread;
};

} // namespace

TEST_CASE("control socket speaks JSON-RPC 2.0, one object per line") {
    Server s;
    s.server.on("echo", [](const json& params, const node::ControlServer::Reply& reply) {
        reply.ok(params);
    });
    s.server.on("later", [&](const json&, const node::ControlServer::Reply& reply) {
        asio::post(s.io, [reply] { reply.ok("done"); }); // answered after the handler returned
    });
    s.server.on("fail", [](const json&, const node::ControlServer::Reply& reply) {
        reply.error(node::rpc::kFailed, "it broke");
    });
    s.server.on("sub", [](const json&, const node::ControlServer::Reply& reply) {
        reply.subscribe();
        reply.ok(true);
    });
    s.run();

    struct stat st {};
    REQUIRE(::stat((s.dir.path / "control.sock").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    Client c(s.dir.path / "control.sock");
    c.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}})"
           "\n");
    auto r = c.line();
    CHECK(r["id"] == 1);
    CHECK(r["result"]["a"] == 1);

    c.send(R"({"jsonrpc":"2.0","id":"x","method":"later"})"
           "\n");
    CHECK(c.line()["result"] == "done");

    c.send(R"({"jsonrpc":"2.0","id":2,"method":"nope"})"
           "\n");
    CHECK(c.line()["error"]["code"] == node::rpc::kMethodNotFound);

    c.send("this is not json\n");
    CHECK(c.line()["error"]["code"] == node::rpc::kParseError);

    c.send(R"([1,2,3])"
           "\n");
    CHECK(c.line()["error"]["code"] == node::rpc::kInvalidRequest);

    // A notification (no id) is not answered: the next line is the answer to id 4.
    c.send(R"({"jsonrpc":"2.0","method":"echo","params":{"n":1}})"
           "\n");
    c.send(R"({"jsonrpc":"2.0","id":4,"method":"echo","params":{"n":2}})"
           "\n");
    auto afterNotification = c.line();
    CHECK(afterNotification["id"] == 4);
    CHECK(afterNotification["result"]["n"] == 2);

    c.send(R"({"id":5,"method":"echo"})"
           "\n"); // not JSON-RPC 2.0
    CHECK(c.line()["error"]["code"] == node::rpc::kInvalidRequest);

    c.send(R"({"jsonrpc":"2.0","id":3,"method":"fail"})"
           "\n");
    auto f = c.line();
    CHECK(f["error"]["code"] == node::rpc::kFailed);
    CHECK(f["error"]["message"] == "it broke");

    Client sub(s.dir.path / "control.sock");
    sub.send(R"({"jsonrpc":"2.0","id":9,"method":"sub"})"
             "\n");
    CHECK(sub.line()["result"] == true);
    asio::post(s.io, [&] { s.server.broadcast({{"type", "test.event"}}); });
    auto ev = sub.line();
    CHECK(ev["method"] == "event");
    CHECK(ev["params"]["type"] == "test.event");
}

TEST_CASE("an over-long request line closes only that connection") {
    Server s;
    s.server.on("echo", [](const json& p, const node::ControlServer::Reply& r) { r.ok(p); });
    s.run();
    {
        Client bad(s.dir.path / "control.sock");
        std::string huge(node::rpc::kMaxLineBytes + 10, 'x');
        ::send(bad.fd, huge.data(), huge.size(), MSG_NOSIGNAL);
        CHECK(bad.line()["error"]["code"] == node::rpc::kInvalidRequest);
    }
    Client good(s.dir.path / "control.sock");
    good.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":[]})"
              "\n");
    CHECK(good.line()["id"] == 1);
}
