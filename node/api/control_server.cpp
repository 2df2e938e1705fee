// ControlServer: accepts local connections, parses lines, dispatches, streams events.
#include "node/api/control_server.h"

#include "node/api/rpc_table.h"

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>
#include <deque>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unordered_map>
#include <unordered_set>

namespace parley::node {

using nlohmann::json;
using Socket = asio::local::stream_protocol::socket;

namespace {

struct Session : std::enable_shared_from_this<Session> {
    explicit Session(Socket s) : socket(std::move(s)), input(rpc::kMaxLineBytes) {}
    Socket socket;
    asio::streambuf input;
    std::deque<std::string> output;
    bool writing = false;
    bool subscribed = false;
    bool closed = false;

    void send(const json& message) {
        if (closed)
            return;
        output.push_back(message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        if (output.size() > 4096) { // a subscriber that stopped reading: let it go
            close();
            return;
        }
        flush();
    }
    void flush() {
        if (writing || output.empty() || closed)
            return;
        writing = true;
        asio::async_write(socket, asio::buffer(output.front()),
                          [self = shared_from_this()](const std::error_code& ec, std::size_t) {
                              self->writing = false;
                              if (ec) {
                                  self->close();
                                  return;
                              }
                              self->output.pop_front();
                              self->flush();
                          });
    }
    void close() {
        if (closed)
            return;
        closed = true;
        std::error_code ignored;
        socket.close(ignored);
    }
};

constexpr std::size_t kMaxSessions = 256;

} // namespace

struct ControlServer::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::io_context& ioContext, std::filesystem::path p)
        : io(ioContext), path(std::move(p)), acceptor(io) {}
    asio::io_context& io;
    std::filesystem::path path;
    asio::local::stream_protocol::acceptor acceptor;
    RpcTable table;
    std::unordered_set<std::shared_ptr<Session>> sessions;
    bool stopped = false;

    void accept() {
        acceptor.async_accept([self = shared_from_this()](const std::error_code& ec,
                                                          Socket socket) {
            if (self->stopped || ec == asio::error::operation_aborted)
                return;
            if (ec) {
                // EMFILE and friends: keep serving; try again shortly.
                spdlog::warn("control socket: accept failed: {}", ec.message());
                auto timer =
                    std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(100));
                timer->async_wait([self, timer](const std::error_code&) {
                    if (!self->stopped)
                        self->accept();
                });
                return;
            }
            if (self->sessions.size() >= kMaxSessions) {
                std::error_code ignored;
                socket.close(ignored); // a local client hoarding connections: refuse the extra
            } else {
                auto session = std::make_shared<Session>(std::move(socket));
                self->sessions.insert(session);
                self->read(session);
            }
            self->accept();
        });
    }

    void read(const std::shared_ptr<Session>& session) {
        asio::async_read_until(
            session->socket, session->input, '\n',
            [weak = weak_from_this(), session](const std::error_code& ec, std::size_t n) {
                auto self = weak.lock();
                if (!self)
                    return;
                if (ec) {
                    if (ec == asio::error::not_found) // line longer than kMaxLineBytes
                        session->send(rpc::errorObject(nullptr, rpc::kInvalidRequest,
                                                       "request line too long"));
                    session->close();
                    self->sessions.erase(session);
                    return;
                }
                std::string line(asio::buffers_begin(session->input.data()),
                                 asio::buffers_begin(session->input.data()) + static_cast<long>(n));
                session->input.consume(n);
                self->dispatch(session, line);
                if (!session->closed)
                    self->read(session);
                else
                    self->sessions.erase(session);
            });
    }

    void dispatch(const std::shared_ptr<Session>& session, const std::string& line) {
        std::weak_ptr<Session> weakSession = session;
        table.dispatch(
            line,
            [weakSession](json message) {
                if (auto s = weakSession.lock())
                    s->send(message);
            },
            [weakSession] {
                if (auto s = weakSession.lock())
                    s->subscribed = true;
            });
    }
};

void ControlServer::Reply::ok(json result) const {
    if (send_)
        send_({{"jsonrpc", "2.0"}, {"id", id_}, {"result", std::move(result)}});
}

void ControlServer::Reply::error(int code, const std::string& message, json data) const {
    if (send_)
        send_(rpc::errorObject(id_, code, message, data));
}

void ControlServer::Reply::subscribe() const {
    if (subscribe_)
        subscribe_();
}

ControlServer::ControlServer(asio::io_context& io, std::filesystem::path socketPath)
    : impl_(std::make_shared<Impl>(io, std::move(socketPath))) {}

ControlServer::~ControlServer() {
    stop();
}

void ControlServer::on(const std::string& method, Handler handler) {
    impl_->table.on(method, std::move(handler));
}

void ControlServer::start() {
    auto& s = *impl_;
    if (s.path.native().size() >= sizeof(sockaddr_un::sun_path))
        throw std::runtime_error("control socket path too long: " + s.path.string() +
                                 " (use a shorter --profile path)");
    std::error_code ec;
    // A socket file left by a daemon that died: the caller holds the profile lock, so no
    // live daemon owns it.
    std::filesystem::remove(s.path, ec);
    asio::local::stream_protocol::endpoint endpoint(s.path.string());
    s.acceptor.open(endpoint.protocol());
    // Create the socket file with mode 0600 from the start.
    mode_t old = ::umask(0177);
    s.acceptor.bind(endpoint, ec);
    ::umask(old);
    if (ec)
        throw std::runtime_error("cannot create control socket " + s.path.string() + ": " +
                                 ec.message());
    ::chmod(s.path.c_str(), 0600);
    s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + s.path.string() + ": " + ec.message());
    s.accept();
}

void ControlServer::stop() {
    auto& s = *impl_;
    if (s.stopped)
        return;
    s.stopped = true;
    std::error_code ec;
    if (s.acceptor.is_open()) {
        s.acceptor.close(ec);
        std::filesystem::remove(s.path, ec);
    }
    for (auto& session : s.sessions)
        session->close();
    s.sessions.clear();
}

void ControlServer::broadcast(const json& event) {
    json message = {{"jsonrpc", "2.0"}, {"method", "event"}, {"params", event}};
    for (auto& session : impl_->sessions)
        if (session->subscribed)
            session->send(message);
}

std::size_t ControlServer::connections() const {
    return impl_->sessions.size();
}

} // namespace parley::node
