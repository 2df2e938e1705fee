#include "node/api/rpc_table.h"

#include <spdlog/spdlog.h>

namespace parley::node {

using nlohmann::json;

json rpc::errorObject(const json& id, int code, const std::string& message, const json& data) {
    json err = {{"code", code}, {"message", message}};
    if (!data.is_null())
        err["data"] = data;
    return {{"jsonrpc", "2.0"}, {"id", id}, {"error", err}};
}

void RpcTable::on(const std::string& method, ControlServer::Handler handler) {
    handlers_[method] = std::move(handler);
}

void RpcTable::dispatch(std::string_view line, const Send& send, const Subscribe& subscribe) const {
    if (line.find_first_not_of(" \t\r\n") == std::string_view::npos)
        return;
    json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded()) {
        send(rpc::errorObject(nullptr, rpc::kParseError, "not valid JSON"));
        return;
    }
    json id = request.is_object() && request.contains("id") ? request["id"] : json();
    if (!request.is_object() || request.value("jsonrpc", json()) != "2.0" ||
        !request.contains("method") || !request["method"].is_string()) {
        send(rpc::errorObject(id, rpc::kInvalidRequest, "expected a JSON-RPC 2.0 request"));
        return;
    }
    // JSON-RPC 2.0 §4: an id is a string, a number or null; params an object or an array.
    if (!(id.is_string() || id.is_number() || id.is_null())) {
        send(rpc::errorObject(nullptr, rpc::kInvalidRequest, "id must be a string or a number"));
        return;
    }
    json params = request.contains("params") ? request["params"] : json::object();
    if (!params.is_object() && !params.is_array()) {
        send(rpc::errorObject(id, rpc::kInvalidRequest, "params must be an object or an array"));
        return;
    }
    // A notification (no id) is carried out but never answered (JSON-RPC 2.0 §4.1).
    bool notification = !request.contains("id");
    auto method = request["method"].get<std::string>();
    auto it = handlers_.find(method);
    if (it == handlers_.end()) {
        if (!notification)
            send(rpc::errorObject(id, rpc::kMethodNotFound, "unknown method: " + method));
        return;
    }
    ControlServer::Reply reply;
    reply.id_ = id;
    if (!notification)
        reply.send_ = send;
    reply.subscribe_ = subscribe;
    try {
        it->second(params, reply);
    } catch (const json::exception& e) {
        reply.error(rpc::kInvalidParams, std::string("invalid params: ") + e.what());
    } catch (const std::exception& e) {
        spdlog::error("control method {} failed: {}", method, e.what());
        reply.error(rpc::kInternalError, e.what());
    }
}

} // namespace parley::node
