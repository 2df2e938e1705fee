// LinkManager's typed bulk streams (DESIGN.md §6): the peer's streams other than the control
// stream go through the StreamRouter to the room that registered their type; rooms open
// their own with openStream. Flow-control credit for a stream's data is the room's to return
// (consumeStream); the link returns it at once for header bytes and for what it refuses.
#include "node/link/links_internal.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <spdlog/spdlog.h>

namespace parley::node {

using Clock = link::SteadyClock;

namespace {

// Streams opened by the client have bit 0 clear (RFC 9000 §2.1).
bool openedByPeer(const quic::Connection& conn, std::int64_t stream) {
    bool byClient = (stream & 1) == 0;
    return byClient != conn.isClient();
}

const char* refusalCounter(link::StreamResetCode code) {
    switch (code) {
    case link::StreamResetCode::unknownType:
        return "unknown_streams";
    case link::StreamResetCode::malformedHeader:
        return "malformed_stream_headers";
    case link::StreamResetCode::tooManyStreams:
        return "streams_over_limit";
    case link::StreamResetCode::notRouted:
        return "streams_not_routed";
    case link::StreamResetCode::roomFailed:
        return "stream_handler_errors";
    }
    return "unknown_streams";
}

// A room's callback: an exception in it is logged and ends that stream, not the node.
template <class F> bool guarded(const char* what, F&& f) {
    try {
        f();
        return true;
    } catch (const std::exception& e) {
        spdlog::error("a stream handler's {} callback failed: {}", what, e.what());
    } catch (...) {
        spdlog::error("a stream handler's {} callback failed", what);
    }
    return false;
}

} // namespace

void LinkManager::Impl::settleCredit(const std::shared_ptr<Link>& link, std::int64_t stream) {
    auto it = owedCredit.find({link->id, stream});
    if (it == owedCredit.end())
        return;
    link->conn->consume(stream, it->second);
    owedCredit.erase(it);
}

void LinkManager::Impl::refuse(const std::shared_ptr<Link>& link, std::int64_t stream,
                               link::StreamResetCode code) {
    count(refusalCounter(code));
    spdlog::debug("resetting stream {} from {}: {}", stream, link->peer.shortHex(),
                  refusalCounter(code));
    settleCredit(link, stream);
    router.abandon({link->id, stream});
    link->conn->resetStream(stream, static_cast<std::uint64_t>(code));
}

void LinkManager::Impl::roomFailed(const std::shared_ptr<Link>& link, std::int64_t stream,
                                   const StreamHandler& handler) {
    refuse(link, stream, link::StreamResetCode::roomFailed);
    if (handler.closed)
        guarded("closed", [&] { handler.closed(StreamHandle{link->peer, link->id, stream}); });
}

void LinkManager::Impl::onBulkData(const std::shared_ptr<Link>& link, std::int64_t stream,
                                   std::span<const std::uint8_t> data, bool fin) {
    link::StreamKey key{link->id, stream};
    auto routed = router.push(key, openedByPeer(*link->conn, stream), data, fin);
    link->conn->consume(stream, data.size() - routed.data.size());
    if (routed.reset) {
        refuse(link, stream, *routed.reset);
        return;
    }
    if (!routed.type)
        return; // the header is not complete yet, or the stream was refused before
    auto it = streamHandlers.find(*routed.type);
    if (it == streamHandlers.end()) { // the router only routes registered types
        link->conn->consume(stream, routed.data.size());
        return;
    }
    core.onUsed(link->id, Clock::now());
    auto handler = it->second; // a callback may register or unregister while we call it
    StreamHandle h{link->peer, link->id, stream};
    if (routed.opened) {
        count("streams_accepted");
        if (handler.opened && !guarded("opened", [&] { handler.opened(h, routed.opened->id); })) {
            link->conn->consume(stream, routed.data.size());
            return roomFailed(link, stream, handler);
        }
        if (!router.typeOf(key)) { // the room reset it from `opened`: the handle is spent
            link->conn->consume(stream, routed.data.size());
            return;
        }
    }
    if (routed.data.empty() && !routed.fin)
        return;
    if (!handler.data) { // a room that takes no data holds back no credit
        link->conn->consume(stream, routed.data.size());
        return;
    }
    if (!routed.data.empty())
        owedCredit[key] += routed.data.size();
    if (!guarded("data", [&] { handler.data(h, routed.data, routed.fin); }))
        roomFailed(link, stream, handler);
}

void LinkManager::Impl::onStreamClosed(const std::shared_ptr<Link>& link, std::int64_t stream) {
    settleCredit(link, stream);
    auto type = router.closed({link->id, stream});
    if (!type)
        return;
    auto it = streamHandlers.find(*type);
    if (it == streamHandlers.end() || !it->second.closed)
        return;
    auto closed = it->second.closed;
    guarded("closed", [&] { closed(StreamHandle{link->peer, link->id, stream}); });
}

void LinkManager::Impl::onWritable(const std::shared_ptr<Link>& link, std::int64_t stream) {
    auto type = router.typeOf({link->id, stream});
    if (!type)
        return;
    auto it = streamHandlers.find(*type);
    if (it == streamHandlers.end() || !it->second.writable)
        return;
    auto handler = it->second;
    StreamHandle h{link->peer, link->id, stream};
    if (!guarded("writable", [&] { handler.writable(h); }))
        roomFailed(link, stream, handler);
}

void LinkManager::Impl::closeStreams(const std::shared_ptr<Link>& link) {
    // The connection is gone, and its window with it.
    for (auto it = owedCredit.lower_bound({link->id, std::numeric_limits<std::int64_t>::min()});
         it != owedCredit.end() && it->first.conn == link->id;)
        it = owedCredit.erase(it);
    for (const auto& closing : router.closedConnection(link->id)) {
        auto stream = closing.first; // not a structured binding: clang 14 cannot capture one
        auto type = closing.second;
        auto it = streamHandlers.find(type);
        if (it == streamHandlers.end() || !it->second.closed)
            continue;
        auto closed = it->second.closed;
        guarded("closed", [&] { closed(StreamHandle{link->peer, link->id, stream}); });
    }
}

std::shared_ptr<link::Link> LinkManager::Impl::linkOf(const StreamHandle& handle) const {
    auto it = links.find(handle.link);
    if (it == links.end() || it->second->peer != handle.peer || handle.stream < 0 ||
        handle.stream == it->second->control)
        return nullptr;
    return it->second;
}

// --- public -----------------------------------------------------------------------------------

bool LinkManager::registerStreamType(link::StreamType type, StreamHandler handler) {
    if (!impl_->router.registerType(type))
        return false;
    impl_->streamHandlers[type] = std::move(handler);
    return true;
}

LinkManager::OpenedStream LinkManager::openStream(const dht::ContactId& peer, link::StreamType type,
                                                  std::span<const std::uint8_t> id) {
    auto& s = *impl_;
    std::vector<std::uint8_t> header;
    if (!link::encodeStreamHeader(type, id, header))
        return {.error = StreamError::badHeader, .handle = {}};
    if (!s.router.registered(type))
        return {.error = StreamError::unregistered, .handle = {}};
    auto link = s.activeLink(peer);
    if (!link || link->conn->closed())
        return {.error = StreamError::noLink, .handle = {}};
    auto stream = link->conn->openBidiStream();
    if (stream < 0)
        return {.error = StreamError::tooManyStreams, .handle = {}};
    if (!s.router.adopt({link->id, stream}, type)) {
        link->conn->resetStream(stream,
                                static_cast<std::uint64_t>(link::StreamResetCode::tooManyStreams));
        return {.error = StreamError::tooManyStreams, .handle = {}};
    }
    link->conn->write(stream, header);
    s.core.onUsed(link->id, Clock::now());
    s.count("streams_opened");
    return {.error = StreamError::ok, .handle = {peer, link->id, stream}};
}

std::size_t LinkManager::writeStream(const StreamHandle& handle, std::span<const std::uint8_t> data,
                                     bool fin) {
    auto link = impl_->linkOf(handle);
    if (!link || !impl_->router.typeOf({link->id, handle.stream}))
        return 0;
    // The peer's unidirectional streams carry nothing back (bit 1 marks them, RFC 9000 §2.1);
    // quic::Connection::write would queue bytes there that can never leave.
    if ((handle.stream & 2) != 0 && openedByPeer(*link->conn, handle.stream))
        return 0;
    impl_->core.onUsed(link->id, Clock::now());
    return link->conn->write(handle.stream, data, fin);
}

void LinkManager::consumeStream(const StreamHandle& handle, std::size_t bytes) {
    // At most what the room was given and has not returned: consuming twice, or after the
    // stream ended (its credit went back then), gives the peer nothing extra.
    auto link = impl_->linkOf(handle);
    if (!link)
        return;
    auto it = impl_->owedCredit.find({link->id, handle.stream});
    if (it == impl_->owedCredit.end())
        return;
    auto n = std::min<std::uint64_t>(bytes, it->second);
    link->conn->consume(handle.stream, n);
    if ((it->second -= n) == 0)
        impl_->owedCredit.erase(it);
}

void LinkManager::resetStream(const StreamHandle& handle, std::uint64_t code) {
    auto link = impl_->linkOf(handle);
    if (!link || !impl_->router.typeOf({link->id, handle.stream}))
        return;
    impl_->settleCredit(link, handle.stream);
    impl_->router.abandon({link->id, handle.stream});
    link->conn->resetStream(handle.stream, code);
}

} // namespace parley::node
