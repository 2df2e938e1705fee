#include "node/api/transfer_methods.h"

#include "dht/hex.h"
#include "node/api/params.h"

#include <optional>
#include <string>

namespace parley::node::api {

using nlohmann::json;

namespace {

const char* eventType(TransferEvent::Kind kind) {
    switch (kind) {
    case TransferEvent::Kind::offered:
        return "transfer.offered";
    case TransferEvent::Kind::progress:
        return "transfer.progress";
    case TransferEvent::Kind::state:
        return "transfer.state";
    }
    return "transfer.unknown";
}

// The "id" parameter as a transfer id; on anything else answers invalid params, nullopt.
std::optional<transfer::TransferId> transferIdParam(const json& params,
                                                    const ControlServer::Reply& reply) {
    std::string text;
    if (params.is_object() && params.contains("id") && params["id"].is_string())
        text = params["id"].get<std::string>();
    transfer::TransferId id{};
    if (!dht::parseHex(text, id)) {
        reply.error(rpc::kInvalidParams, "not a transfer id: expected 32 hexadecimal characters");
        return std::nullopt;
    }
    return id;
}

// The "contact" parameter (contactIdParam reads "id", which here is the transfer's).
std::optional<dht::ContactId> contactParam(const json& params, const ControlServer::Reply& reply) {
    std::string text;
    if (params.is_object() && params.contains("contact") && params["contact"].is_string())
        text = params["contact"].get<std::string>();
    auto id = dht::ContactId::parse(text);
    if (!id)
        reply.error(rpc::kInvalidParams,
                    "contact: not a contact id: expected 64 hexadecimal characters");
    return id;
}

// An absolute path, or nullopt (a relative one, an empty one, one with a NUL byte: the
// daemon's working directory means nothing to the person, so the CLI sends absolute paths).
std::optional<std::filesystem::path> absolutePath(const json& v) {
    if (!v.is_string())
        return std::nullopt;
    auto text = v.get<std::string>();
    if (text.empty() || text.find('\0') != std::string::npos)
        return std::nullopt;
    std::filesystem::path p(text);
    if (!p.is_absolute())
        return std::nullopt;
    return p;
}

// The optional "dir" parameter: absent or null is nullopt; `ok` false when it is given but is
// not an absolute path (then invalid params has been answered).
std::optional<std::filesystem::path> dirParam(const json& params, const ControlServer::Reply& reply,
                                              bool& ok) {
    ok = true;
    if (!params.is_object() || !params.contains("dir") || params["dir"].is_null())
        return std::nullopt;
    auto dir = absolutePath(params["dir"]);
    if (!dir) {
        ok = false;
        reply.error(rpc::kInvalidParams, "dir must be an absolute path or null");
    }
    return dir;
}

std::optional<std::vector<std::filesystem::path>> pathsParam(const json& params,
                                                             const ControlServer::Reply& reply) {
    if (!params.is_object() || !params.contains("paths") || !params["paths"].is_array() ||
        params["paths"].empty()) {
        reply.error(rpc::kInvalidParams, "paths must be a non-empty array of absolute paths");
        return std::nullopt;
    }
    std::vector<std::filesystem::path> paths;
    for (const auto& v : params["paths"]) {
        auto p = absolutePath(v);
        if (!p) {
            reply.error(rpc::kInvalidParams,
                        "paths[" + std::to_string(paths.size()) + "] is not an absolute path");
            return std::nullopt;
        }
        paths.push_back(std::move(*p));
    }
    return paths;
}

// Answers a command: the transfer as it is now, or the refusal (exit 1 in the CLI).
void answer(const ControlServer::Reply& reply, const TransferCommandResult& r) {
    if (r.ok())
        reply.ok({{"transfer", toJson(r.transfer)}});
    else
        reply.error(rpc::kFailed, r.error);
}

void registerOffer(ControlServer& control, TransferManager& transfers) {
    control.on("transfer.offer", [&transfers](const json& params,
                                              const ControlServer::Reply& reply) {
        auto to = contactParam(params, reply);
        if (!to)
            return;
        auto paths = pathsParam(params, reply);
        if (!paths)
            return;
        std::string message;
        if (params.contains("message") && !params["message"].is_null()) {
            if (!params["message"].is_string() ||
                params["message"].get<std::string>().size() > transfer::kMaxOfferMessage) {
                reply.error(rpc::kInvalidParams, "message must be a string of at most " +
                                                     std::to_string(transfer::kMaxOfferMessage) +
                                                     " bytes");
                return;
            }
            message = params["message"].get<std::string>();
        }
        storeGuarded(reply, [&] {
            transfers.offer(*to, std::move(*paths), std::move(message),
                            [reply](const OfferResult& r) {
                                if (r.ok())
                                    reply.ok({{"transfer", toJson(r.transfer)},
                                              {"skipped", toJson(r.skipped)}});
                                else
                                    reply.error(rpc::kFailed, r.error);
                            });
        });
    });
}

void registerCommands(ControlServer& control, TransferManager& transfers) {
    control.on("transfer.accept",
               [&transfers](const json& params, const ControlServer::Reply& reply) {
                   auto id = transferIdParam(params, reply);
                   if (!id)
                       return;
                   bool ok = false;
                   auto dir = dirParam(params, reply, ok);
                   if (!ok)
                       return;
                   storeGuarded(reply, [&] { answer(reply, transfers.accept(*id, dir)); });
               });
    using Command = TransferCommandResult (TransferManager::*)(const transfer::TransferId&);
    const std::pair<const char*, Command> commands[] = {
        {"transfer.decline", &TransferManager::decline},
        {"transfer.cancel", &TransferManager::cancel},
        {"transfer.pause", &TransferManager::pause},
        {"transfer.resume", &TransferManager::resume},
    };
    for (const auto& entry : commands) {
        // Plain variables, not a structured binding: clang 14 cannot capture one.
        Command command = entry.second;
        control.on(entry.first,
                   [&transfers, command](const json& params, const ControlServer::Reply& reply) {
                       auto id = transferIdParam(params, reply);
                       if (!id)
                           return;
                       storeGuarded(reply, [&] { answer(reply, (transfers.*command)(*id)); });
                   });
    }
}

void registerQueries(ControlServer& control, TransferManager& transfers) {
    control.on("transfers", [&transfers](const json& params, const ControlServer::Reply& reply) {
        std::optional<dht::ContactId> contact;
        if (params.is_object() && params.contains("contact") && !params["contact"].is_null()) {
            contact = contactParam(params, reply);
            if (!contact)
                return;
        }
        storeGuarded(reply, [&] {
            reply.ok({{"transfers",
                       toJson(contact ? transfers.withContact(*contact) : transfers.list())}});
        });
    });
    control.on("transfer.get", [&transfers](const json& params, const ControlServer::Reply& reply) {
        auto id = transferIdParam(params, reply);
        if (!id)
            return;
        storeGuarded(reply, [&] {
            if (auto t = transfers.get(*id))
                reply.ok({{"transfer", toJson(*t)}});
            else
                reply.error(rpc::kFailed, "no transfer with this id");
        });
    });
    control.on("transfer.auto_accept",
               [&transfers](const json& params, const ControlServer::Reply& reply) {
                   auto contact = contactParam(params, reply);
                   if (!contact)
                       return;
                   if (!params.contains("dir")) {
                       reply.error(rpc::kInvalidParams, "dir must be an absolute path or null");
                       return;
                   }
                   bool ok = false;
                   auto dir = dirParam(params, reply, ok);
                   if (!ok)
                       return;
                   storeGuarded(reply, [&] {
                       transfers.setAutoAccept(*contact, dir);
                       reply.ok({{"contact", contact->toHex()},
                                 {"dir", dir ? json(dir->string()) : json(nullptr)}});
                   });
               });
}

} // namespace

json toJson(const TransferSummary& t) {
    json problems = json::array();
    for (const auto& [path, reason] : t.problems)
        problems.push_back({{"path", path}, {"reason", reason}});
    return {{"id", dht::toHex(t.id)},
            {"contact", t.contact.toHex()},
            {"direction", t.outgoing ? "out" : "in"},
            {"state", t.state},
            {"reason", t.reason},
            {"name", t.name},
            {"message", t.message},
            {"files", t.files},
            {"bytes", t.totalBytes},
            {"done", t.doneBytes},
            {"rate", t.rateBytesPerS},
            {"dest", t.dest},
            {"created_ms", t.createdMs},
            {"updated_ms", t.updatedMs},
            {"problems", std::move(problems)},
            {"more_problems", t.moreProblems}};
}

json toJson(const std::vector<TransferSummary>& transfers) {
    json out = json::array();
    for (const auto& t : transfers)
        out.push_back(toJson(t));
    return out;
}

json toJson(const TransferEvent& e) {
    auto j = toJson(e.transfer);
    j["type"] = eventType(e.kind);
    return j;
}

json toJson(const std::vector<transfer::Skipped>& skipped) {
    json out = json::array();
    for (const auto& s : skipped)
        out.push_back({{"path", s.path}, {"reason", s.reason}});
    return out;
}

void registerTransferMethods(ControlServer& control, TransferManager& transfers) {
    registerOffer(control, transfers);
    registerCommands(control, transfers);
    registerQueries(control, transfers);
}

} // namespace parley::node::api
