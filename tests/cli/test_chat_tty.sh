#!/usr/bin/env bash
# `parley chat` driven as a person would, in a real terminal: tmux runs it in a detached
# 120x30 pane, keys are typed with send-keys and the screen is read with capture-pane.
# Checks: unread count and read receipts, a typed line reaching the contact, a reply showing
# up live as "[HH:MM] bob: ...", delivery notices, line editing (Left, Backspace), escape
# sequences in a received message shown inert, the terminal restored after Ctrl-D ("Bye."),
# "/quit" and Ctrl-C. Daemons on 127.0.0.1 with a random private network id; tmux on a
# private socket (-L) so that a user's tmux server is never touched. Skips (77) without tmux.
# Usage: test_chat_tty.sh PATH_TO_PARLEY
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_chat_tty.sh PATH_TO_PARLEY}
command -v tmux >/dev/null ||
    skip "the terminal chat test needs tmux (contrib/install-deps.sh installs it)"
WORK=$(mktemp -d /tmp/parley-tty.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
SOCKET="parley-test-$$"
S="$WORK/seed"
A="$WORK/alice"
B="$WORK/bob"
# U+FFFD, what a control character in someone else's text becomes on our screen.
REPLACEMENT=$'\xef\xbf\xbd'
# tmux reads and writes UTF-8 only when the locale says so.
export LC_ALL=C.UTF-8
started=$SECONDS

cleanup() {
    tmux -L "$SOCKET" kill-server 2>/dev/null
    # kill-server leaves the socket file behind.
    rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SOCKET"
    stop_daemons "$S" "$A" "$B"
    rm -rf "$WORK"
}
trap cleanup EXIT

t() { tmux -L "$SOCKET" "$@"; }

# pane_has WINDOW TEXT: the pane's visible text (wrapped lines joined) contains TEXT.
pane_has() { t capture-pane -p -J -t "$1" | grep -qF -- "$2"; }
pane_dump() { echo "  --- pane $1:"; t capture-pane -p -J -t "$1" | sed '/^$/d; s/^/  | /'; }

# expect_pane "description" WINDOW TEXT [SECONDS]
expect_pane() {
    if wait_until "${4:-15}" pane_has "$2" "$3"; then
        pass
    else
        fail "$1: '$3' not on the screen"
        pane_dump "$2"
    fi
}

# in_history PROFILE PEER DIRECTION TEXT [STATE...]: the conversation has exactly one such
# message (in one of those states).
in_history() {
    "$PARLEY" --profile "$1" history "$2" --json --limit 1000 >"$WORK/h.json" 2>/dev/null &&
        [ "$(count_text "$WORK/h.json" "${@:3}")" = 1 ]
}

# expect_history "description" PROFILE PEER DIRECTION TEXT [STATE...]
expect_history() {
    local what=$1
    shift
    if wait_until 15 in_history "$@"; then
        pass
    else
        fail "$what"
        sed 's/^/  history: /' "$WORK/h.json" | cut -c1-400
    fi
}

# start_chat WINDOW: `parley --profile A chat bob` in a new 120x30 pane. A shell around it
# prints the exit code and the terminal's line discipline afterwards (raw mode must be
# undone); the pane stays after the exit so that all of it can be read.
start_chat() {
    local cmd="'$PARLEY' --profile '$A' chat bob; echo \"chat exited \$?\"; "
    cmd+="stty -a | tr ' ;' '\n\n' | grep -xE 'icanon|echo|isig' | tr '\n' ' '; echo 'stty done'"
    if t has-session 2>/dev/null; then
        t new-window -d -n "$1" "$cmd"
    else
        t -f /dev/null new-session -d -s parley -n "$1" -x 120 -y 30 "$cmd"
    fi
    t set-option -w -t "$1" remain-on-exit on
    wait_until 15 pane_has "$1" "Enter sends" || { fail "chat did not start in a terminal"; pane_dump "$1"; }
}

# expect_exit "description" WINDOW: the chat program said "Bye.", exited 0 and left the
# terminal in canonical mode with echo and signals.
expect_exit() {
    if wait_until 10 pane_has "$2" "stty done"; then
        local screen
        screen=$(t capture-pane -p -J -t "$2")
        if grep -q "Bye." <<<"$screen" && grep -q "chat exited 0" <<<"$screen" &&
            grep -qw icanon <<<"$screen" && grep -qw echo <<<"$screen" &&
            grep -qw isig <<<"$screen"; then
            pass
        else
            fail "$1: no 'Bye.', a non-zero exit or a terminal left in raw mode"
            pane_dump "$2"
        fi
    else
        fail "$1: chat did not exit"
        pane_dump "$2"
    fi
}

# --- set-up: three daemons, alice and bob become contacts --------------------------------------
setup_contacts "tty test"

# --- unread, then opening the chat reads it ---------------------------------------------------
"$PARLEY" --profile "$B" send "$ALICE_ID" "before you looked" --wait --timeout 20 >/dev/null ||
    fail "bob's first message was not delivered"
if "$PARLEY" --profile "$A" contacts | grep -q "bob.* 1 unread"; then pass; else
    fail "'parley contacts' does not show 1 unread"; "$PARLEY" --profile "$A" contacts; fi

start_chat main
expect_pane "history when the chat opens" main "bob: before you looked"
if t capture-pane -p -t main | grep -qE '^\[[0-2][0-9]:[0-5][0-9]\] bob: before you looked$'; then
    pass
else
    fail "a received line is not '[HH:MM] bob: text'"
    pane_dump main
fi
expect_history "bob's message is not 'read' at bob after alice opened the chat" \
    "$B" "$ALICE_ID" out "before you looked" read
if "$PARLEY" --profile "$A" contacts | grep -q "unread"; then
    fail "still unread after the chat opened"; "$PARLEY" --profile "$A" contacts
else
    pass
fi

# --- typing, a live reply, delivery notices -------------------------------------------------
t send-keys -t main -l "hello from tmux"
t send-keys -t main Enter
expect_history "the typed line did not reach bob" "$B" "$ALICE_ID" in "hello from tmux"
expect_pane "own line" main "you: hello from tmux"
expect_pane "delivery notice" main '· "hello from tmux" delivered'
"$PARLEY" --profile "$B" send "$ALICE_ID" "reply from bob" >/dev/null || fail "bob's reply"
expect_pane "a reply shows up live" main "bob: reply from bob"

# --- line editing: Left inserts in the middle, Backspace deletes before the cursor ------------
t send-keys -t main -l "helo"
t send-keys -t main Left
t send-keys -t main -l "l"
t send-keys -t main Enter
expect_history "helo, Left, l, Enter did not send 'hello'" "$B" "$ALICE_ID" in "hello"
t send-keys -t main -l "typoo"
t send-keys -t main BSpace
t send-keys -t main Enter
expect_history "typoo, Backspace, Enter did not send 'typo'" "$B" "$ALICE_ID" in "typo"

# --- escape sequences from the other side are shown, not obeyed --------------------------------
# SGR red, a C1 CSI (U+009B) and clear-screen: a terminal obeying them would turn red and lose
# the lines above. Each control character must appear as U+FFFD instead (tmux itself ignores
# C1 controls, so for the CSI the U+FFFD on the screen is what shows it was neutralised).
printf 'evil \033[31mRED\033[0m \xc2\x9b7m \033[2J end' | "$PARLEY" --profile "$B" send "$ALICE_ID" - >/dev/null ||
    fail "bob's message with escape sequences"
expect_pane "a message with escape sequences" main "bob: evil ${REPLACEMENT}[31mRED${REPLACEMENT}[0m ${REPLACEMENT}7m ${REPLACEMENT}[2J end"
if t capture-pane -p -e -t main | grep -qF $'\e[31m'; then
    fail "the screen turned red"
    t capture-pane -p -e -t main | cat -v | grep -F "RED"
else
    pass
fi
if t capture-pane -p -e -t main | grep "RED" | grep -qF $'\e[7m'; then
    fail "the C1 CSI was obeyed (reverse video)"
else
    pass
fi
pane_has main "bob: before you looked" && pass || { fail "the screen was cleared"; pane_dump main; }

# --- leaving: Ctrl-D on an empty line -----------------------------------------------------------
t send-keys -t main C-d
expect_exit "Ctrl-D" main

# --- "/quit" and Ctrl-C leave too -------------------------------------------------------------
# The history shown when a chat opens goes through the same sanitising as live lines.
start_chat quit
expect_pane "the message with escape sequences in the history" quit \
    "bob: evil ${REPLACEMENT}[31mRED${REPLACEMENT}[0m ${REPLACEMENT}7m ${REPLACEMENT}[2J end"
if t capture-pane -p -e -t quit | grep -qF $'\e[31m'; then fail "the history turned red"; else pass; fi
t send-keys -t quit -l "/quit"
t send-keys -t quit Enter
expect_exit "/quit" quit
start_chat ctrlc
t send-keys -t ctrlc -l "half a line"
t send-keys -t ctrlc C-c
expect_exit "Ctrl-C" ctrlc
# Neither "/quit" nor the unfinished line was sent.
if in_history "$B" "$ALICE_ID" in "/quit" || in_history "$B" "$ALICE_ID" in "half a line"; then
    fail "/quit or an unfinished line was sent"
else
    pass
fi

# Stop the daemons here rather than in cleanup, so that what a sanitizer build reports at exit
# (into daemon.log) is seen.
down_and_check_logs "$A" "$B" "$S"
summary "chat tty" "$((SECONDS - started)) s"
