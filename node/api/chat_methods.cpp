#include "node/api/chat_methods.h"

#include "dht/hex.h"
#include "node/api/params.h"

namespace parley::node::api {

using nlohmann::json;

namespace {

std::optional<std::array<std::uint8_t, 16>> messageIdParam(const json& params,
                                                           const ControlServer::Reply& reply) {
    std::string text;
    if (params.is_object() && params.contains("message") && params["message"].is_string())
        text = params["message"].get<std::string>();
    std::array<std::uint8_t, 16> id{};
    if (!dht::parseHex(text, id)) {
        reply.error(rpc::kInvalidParams, "not a message id: expected 32 hexadecimal characters");
        return std::nullopt;
    }
    return id;
}

} // namespace

json toJson(const ChatRecord& r) {
    return {{"id", dht::toHex(r.id)},
            {"contact", r.contact.toHex()},
            {"direction", r.outgoing ? "out" : "in"},
            {"seq", r.seq},
            {"ts", r.sentMs},
            {"text", r.text},
            {"state", r.state}};
}

json toJson(const std::vector<ChatRecord>& messages) {
    auto out = json::array();
    for (const auto& r : messages)
        out.push_back(toJson(r));
    return out;
}

json toJson(const ChatEvent& e) {
    if (e.kind == ChatEvent::Kind::message) {
        auto j = toJson(e.record);
        j["type"] = "chat.message";
        return j;
    }
    return {{"type", "chat.state"},
            {"contact", e.contact.toHex()},
            {"id", dht::toHex(e.id)},
            {"state", e.state}};
}

json toJson(const SendResult& r) {
    return {{"id", dht::toHex(r.id)}, {"seq", r.seq}, {"state", r.state}};
}

json toJson(const WaitResult& r) {
    json j = {{"id", dht::toHex(r.id)}, {"delivered", r.delivered}};
    if (!r.error.empty())
        j["error"] = r.error;
    else
        j["state"] = r.state;
    return j;
}

void registerChatMethods(ControlServer& control, ChatManager& chat) {
    control.on("chat.send", [&chat](const json& params, const ControlServer::Reply& reply) {
        auto target = contactIdParam(params, reply);
        if (!target)
            return;
        if (!params.contains("text") || !params["text"].is_string()) {
            reply.error(rpc::kInvalidParams, "text must be a string");
            return;
        }
        storeGuarded(reply, [&] {
            auto r = chat.send(*target, params["text"].get<std::string>());
            if (r.ok())
                reply.ok(toJson(r));
            else
                reply.error(rpc::kFailed, r.error);
        });
    });
    control.on("chat.wait", [&chat](const json& params, const ControlServer::Reply& reply) {
        auto message = messageIdParam(params, reply);
        if (!message)
            return;
        auto timeout = secondsParam(params, "timeout", 30.0, 0, 3600);
        if (!timeout) {
            reply.error(rpc::kInvalidParams, "timeout must be between 0 and 3600 seconds");
            return;
        }
        storeGuarded(reply, [&] {
            chat.wait(*message, *timeout, [reply](const WaitResult& r) { reply.ok(toJson(r)); });
        });
    });
    control.on("chat.history", [&chat](const json& params, const ControlServer::Reply& reply) {
        auto target = contactIdParam(params, reply);
        if (!target)
            return;
        auto limit = intParam(params, "limit", 50, 1, 100000);
        if (!limit) {
            reply.error(rpc::kInvalidParams, "limit must be between 1 and 100000");
            return;
        }
        storeGuarded(reply, [&] {
            reply.ok(toJson(chat.history(*target, static_cast<std::size_t>(*limit))));
        });
    });
    control.on("chat.read", [&chat](const json& params, const ControlServer::Reply& reply) {
        auto target = contactIdParam(params, reply);
        if (!target)
            return;
        storeGuarded(reply, [&] {
            auto n = chat.markRead(*target);
            reply.ok({{"contact", target->toHex()}, {"marked_read", n}});
        });
    });
}

} // namespace parley::node::api
