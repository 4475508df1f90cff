#!/bin/sh
# Records Cloudflare's runtime's answers to tests/cases.js into tests/workerd-expected.json.
# Usage: WORKERD=/path/to/workerd tests/workerd/record.sh   (npm install workerd gives one at
# node_modules/@cloudflare/workerd-linux-64/bin/workerd). Run from runtimes/js/web.
set -eu
: "${WORKERD:?set WORKERD to the workerd binary}"
PORT="${PORT:-38517}"
dir="$(cd "$(dirname "$0")" && pwd)"
"$WORKERD" serve "$dir/config.capnp" --socket-addr "http=127.0.0.1:$PORT" >"$dir/workerd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
# Wait for the socket (bounded), then fetch once.
i=0
until curl -sf "http://127.0.0.1:$PORT/" -o "$dir/../workerd-expected.json"; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { cat "$dir/workerd.log"; exit 1; }
  sleep 0.1
done
"$WORKERD" --version > "$dir/../workerd-version.txt"
echo "recorded $(grep -c '":' "$dir/../workerd-expected.json") cases from $(cat "$dir/../workerd-version.txt")"
