#include "node/api/contact_methods.h"

#include "node/api/params.h"
#include "node/store/store.h"

namespace parley::node::api {

using nlohmann::json;

namespace {

const char* eventType(ContactEvent::Kind kind) {
    switch (kind) {
    case ContactEvent::Kind::request:
        return "contact.request";
    case ContactEvent::Kind::accepted:
        return "contact.accepted";
    case ContactEvent::Kind::sent:
        return "contact.sent";
    case ContactEvent::Kind::presence:
        return "contact.presence";
    }
    return "contact.unknown";
}

json contactJson(const ContactSummary& c) {
    const auto& r = c.record;
    return {{"id", r.id.toHex()},
            {"alias", r.alias},
            {"name", r.name},
            {"state", toString(r.state)},
            {"presence", r.online ? "online" : "offline"},
            {"last_seen", r.lastSeenMs ? json(*r.lastSeenMs / 1000) : json(nullptr)},
            {"message", r.message},
            {"since", r.createdMs / 1000},
            {"unread", c.unread}};
}

// Answers a command: a refusal or a store failure is a failure (exit 1 in the CLI).
void answer(const ControlServer::Reply& reply, const CommandStatus& status, json result) {
    if (status.ok())
        reply.ok(std::move(result));
    else
        reply.error(rpc::kFailed, status.error);
}

} // namespace

json toJson(const ContactEvent& e) {
    json j = {{"type", eventType(e.kind)}, {"id", e.id.toHex()}};
    switch (e.kind) {
    case ContactEvent::Kind::request:
        j["name"] = e.name;
        j["message"] = e.message;
        break;
    case ContactEvent::Kind::accepted:
        j["by"] = e.by;
        break;
    case ContactEvent::Kind::sent:
        j["kind"] = e.envelopeKind;
        break;
    case ContactEvent::Kind::presence:
        j["presence"] = e.online ? "online" : "offline";
        j["last_seen"] = e.lastSeenMs / 1000;
        break;
    }
    return j;
}

json toJson(const AddResult& r) {
    return {{"id", r.id.toHex()}, {"state", toString(r.state)}, {"delivery", r.delivery}};
}

json toJson(const std::vector<ContactSummary>& contacts) {
    json out = json::array();
    for (const auto& c : contacts)
        out.push_back(contactJson(c));
    return out;
}

json requestsJson(const std::vector<ContactRecord>& requests) {
    json out = json::array();
    for (const auto& c : requests)
        out.push_back({{"id", c.id.toHex()},
                       {"name", c.name},
                       {"message", c.message},
                       {"received", c.createdMs / 1000}});
    return out;
}

void registerContactMethods(ControlServer& control, ContactManager& contacts) {
    control.on("contact.add", [&contacts](const json& params, const ControlServer::Reply& reply) {
        auto target = contactIdParam(params, reply);
        if (!target)
            return;
        auto message = params.value("message", std::string());
        auto alias = params.value("alias", std::string());
        storeGuarded(reply, [&] {
            auto status = contacts.add(*target, message, alias,
                                       [reply](const AddResult& r) { reply.ok(toJson(r)); });
            if (!status.ok())
                reply.error(rpc::kFailed, status.error);
        });
    });
    control.on("contact.requests", [&contacts](const json&, const ControlServer::Reply& reply) {
        storeGuarded(reply, [&] { reply.ok(requestsJson(contacts.requests())); });
    });
    control.on("contacts", [&contacts](const json&, const ControlServer::Reply& reply) {
        storeGuarded(reply, [&] { reply.ok(toJson(contacts.contacts())); });
    });
    using Command = CommandStatus (ContactManager::*)(const dht::ContactId&);
    const std::pair<const char*, Command> commands[] = {
        {"accept", &ContactManager::accept}, {"decline", &ContactManager::decline},
        {"block", &ContactManager::block},   {"unblock", &ContactManager::unblock},
        {"remove", &ContactManager::remove},
    };
    for (const auto& entry : commands) {
        // Plain variables, not a structured binding: clang 14 cannot capture one.
        const char* name = entry.first;
        Command command = entry.second;
        control.on(std::string("contact.") + name,
                   [&contacts, name = std::string(name),
                    command](const json& params, const ControlServer::Reply& reply) {
                       auto target = contactIdParam(params, reply);
                       if (!target)
                           return;
                       storeGuarded(reply, [&] {
                           json result = name == "accept"
                                             ? json{{"id", target->toHex()}, {"state", "accepted"}}
                                             : json{{"id", target->toHex()}, {"done", name}};
                           answer(reply, (contacts.*command)(*target), std::move(result));
                       });
                   });
    }
}

} // namespace parley::node::api
