#!/usr/bin/env bash
# Checks the house rules of DESIGN.md §1 against the includes of the tree:
#   cli -> node -> {dht, media}; dht and media include neither each other nor node/cli;
#   inside node/: every source file is in a room; the features (contacts, chat, transfer,
#   call) include no other feature; the base rooms (store, transport, link) include no
#   feature, no api/ and not node.h; only node.{h,cpp} and api/ may include api/;
#   ngtcp2 only in transport/quic*; OpenDHT only in dht/*.cpp and dht/detail/; nlohmann-json
#   in node/ only in api/, the composition root and store/profile.cpp (config.json).
# Usage: contrib/check-layering.sh [ROOT]. Prints each violation; exits 1 if there is one.
set -uo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
violations=0
bad() {
    echo "layering: $*"
    violations=$((violations + 1))
}
features=(contacts chat transfer call)
base=(store transport link)

# includes FILE: the quoted and angled include targets of FILE, one a line.
includes() { sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p' "$1"; }
room_of() { # node/<room>/... -> room; node/node.cpp -> root
    local rest=${1#node/}
    case $rest in */*) echo "${rest%%/*}" ;; *) echo root ;; esac
}
is_in() {
    local x=$1
    shift
    for y; do [ "$x" = "$y" ] && return 0; done
    return 1
}

while IFS= read -r f; do
    top=${f%%/*}
    for inc in $(includes "$f"); do
        case $top in
        dht)
            case $inc in node/* | cli/* | media/*) bad "$f includes $inc (dht is below node, cli and media)" ;; esac
            case $inc in opendht* | opendht/*)
                case $f in dht/*.cpp | dht/detail/*) ;; *) bad "$f includes $inc (OpenDHT stays in dht/*.cpp)" ;; esac ;;
            esac
            ;;
        media)
            case $inc in node/* | cli/* | dht/*) bad "$f includes $inc (media stands alone)" ;; esac
            ;;
        node)
            case $inc in cli/*) bad "$f includes $inc (node is below cli)" ;; esac
            case $inc in opendht* | dht/detail/*) bad "$f includes $inc (OpenDHT stays in dht/)" ;; esac
            case $inc in ngtcp2/*)
                case $f in node/transport/quic*) ;; *) bad "$f includes $inc (ngtcp2 stays in transport/quic*)" ;; esac ;;
            esac
            # The control API's JSON is made in api/ (and handed out by the composition root);
            # the rooms report typed values. profile.cpp reads the config.json file.
            case $inc in nlohmann/*)
                case $f in node/api/* | node/node.h | node/node.cpp | node/store/profile.cpp) ;;
                *) bad "$f includes $inc (JSON is made in api/; rooms report typed values)" ;; esac ;;
            esac
            from=$(room_of "$f")
            case $inc in
            node/*)
                to=$(room_of "$inc")
                [ "$from" = "$to" ] && continue
                if [ "$to" = root ]; then
                    [ "$from" = root ] || bad "$f includes $inc (only the composition root sees node.h)"
                elif is_in "$from" "${features[@]}" && is_in "$to" "${features[@]}"; then
                    bad "$f includes $inc (a feature never includes another feature)"
                elif is_in "$from" "${base[@]}" && ! is_in "$to" "${base[@]}"; then
                    bad "$f includes $inc (a base room includes no feature and no api)"
                elif [ "$to" = api ] && [ "$from" != root ]; then
                    bad "$f includes $inc (only node.cpp wires the api)"
                fi
                ;;
            esac
            ;;
        esac
    done
done < <(git ls-files 'dht/*.h' 'dht/*.cpp' 'media/*.h' 'media/*.cpp' 'node/*.h' 'node/*.cpp' 2>/dev/null)

# Base rooms in order: store < transport < link (a lower one never includes a higher one).
for f in $(git ls-files 'node/store/*' 'node/transport/*'); do
    for inc in $(includes "$f"); do
        case $f:$inc in
        node/store/*:node/transport/* | node/store/*:node/link/* | node/transport/*:node/link/*)
            bad "$f includes $inc (store < transport < link)" ;;
        esac
    done
done

for f in $(git ls-files 'node/*'); do
    case $f in
    node/node.h | node/node.cpp | node/CMakeLists.txt | node/*/*) ;;
    *) bad "$f is in node/ but in no room" ;;
    esac
done

if [ "$violations" -gt 0 ]; then
    echo "layering: $violations violation(s)"
    exit 1
fi
echo "layering: 1 passed, 0 failed"
