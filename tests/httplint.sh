#!/usr/bin/env bash
# tests/httplint.sh: lint a representative set of weir's responses with httplint.
#
#   python3 -m venv /tmp/httplint-venv && /tmp/httplint-venv/bin/pip install httplint
#   bash tests/httplint.sh /tmp/httplint-venv/bin/httplint
#
# 1. Records the responses: the e2e test `lint::record_responses` (tests/lint.rs) asks two
#    servers for every kind of answer weir gives and, with WEIR_RESPONSES_DIR set, writes
#    each one byte for byte to DIR/NN-label.http (and its request to DIR/NN-label.request).
# 2. Feeds each file to `httplint` on its standard input (httplint lints one raw response
#    message; `-n` is not passed, since the Date it would compare with the clock was
#    written a few seconds before the lint runs).
# 3. Prints every note of level WARN or BAD, and fails if one is not in ACCEPTED below.
#
# The argument is the httplint program (default: `httplint` on PATH). WEIR_RESPONSES_DIR,
# if set, keeps the recorded files there instead of in a temporary directory.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

httplint=${1:-httplint}
if ! command -v "$httplint" >/dev/null 2>&1; then
    echo "httplint not found ($httplint); install it: pip install httplint" >&2
    exit 2
fi

# Notes that are expected, one per line: label pattern (an extended regex on NN-label),
# TAB, the note's text (a fixed string), TAB, why it is not a defect of weir.
ACCEPTED=$(
    cat <<'EOF'
^[0-9]+-206-multipart$	This response is partial, but doesn't have a Content-Range header.	httplint does not exempt multipart/byteranges: RFC 9110 §15.3.7.2 says a server MUST NOT send Content-Range in the header section of a multipart response (each part carries its own)
^[0-9]+-400-	The server didn't understand the request.	describes the status code, which is the intended answer
^[0-9]+-414$	The server won't accept a URI this long	describes the status code, which is the intended answer
^[0-9]+-505$	The request HTTP version isn't supported.	describes the status code, which is the intended answer
.	This response allows caches to assign their own freshness lifetimes to it.	heuristic freshness (RFC 9111 §4.2.2) is weir's default, as nginx's and Apache's: a site sets its policy with `header TEMPLATE Cache-Control ...` (the status page sends no-store)
EOF
)

accepted() {
    local label=$1 note=$2 pattern text why
    while IFS=$'\t' read -r pattern text why; do
        if [[ $label =~ $pattern && $note == *"$text"* ]]; then
            return 0
        fi
    done <<<"$ACCEPTED"
    return 1
}

if [[ -n ${WEIR_RESPONSES_DIR:-} ]]; then
    dir=$WEIR_RESPONSES_DIR
    mkdir -p "$dir"
    rm -f "$dir"/*.http "$dir"/*.request
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi

WEIR_RESPONSES_DIR=$dir cargo test -q -p weir --test e2e_http lint::record_responses

files=0
unexpected=0
for file in "$dir"/*.http; do
    label=$(basename "$file" .http)
    files=$((files + 1))
    if ! out=$("$httplint" <"$file" 2>&1); then
        echo "$label: httplint could not read it: $out"
        unexpected=$((unexpected + 1))
        continue
    fi
    while IFS= read -r line; do
        case $line in
        *"[WARN]"* | *"[BAD]"*) ;;
        *) continue ;;
        esac
        note=${line#*] }
        if accepted "$label" "$note"; then
            echo "$label: $line (expected)"
        else
            echo "$label: $line"
            unexpected=$((unexpected + 1))
        fi
    done <<<"$out"
done

echo "httplint: $files responses, $unexpected unexpected notes"
((unexpected == 0))
