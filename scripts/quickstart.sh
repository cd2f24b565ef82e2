#!/usr/bin/env bash
# Licet quick start: publish -> swarm -> verified fetch -> refusal, with the real binaries.
# Builds licet-manifest and licet-node (release), then in a temporary directory:
#   1. the rights holder makes a key, signs a sample release, verifies it, and sees tampered
#      content, a look-alike signed by an unknown key, the wrong region and an ended window
#      refused; delegates to a partner;
#   2. three nodes on 127.0.0.1 form a swarm: A seeds the sample in place, B fetches it by link
#      and the bytes are verified, C refuses a look-alike whose signature does not verify and a
#      release not licensed in its region; the rights holder withdraws the release through a
#      signed catalog, A publishes the catalog, then the takedown, and B stops serving the
#      withdrawn release at once.
# Everything it starts is stopped and everything it creates is removed at the end.
# LICET_BIN_DIR=DIR uses the binaries in DIR instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."

say() {
  # Bold on a terminal only: a log or a pipe gets plain text.
  if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi
}
expect_refusal() {
  # Runs a command that must fail with exit 1 (a verification or policy refusal) and shows why.
  local out code=0
  out=$("$@" 2>&1) || code=$?
  if [ "$code" -ne 1 ]; then
    printf 'expected a refusal (exit 1), got exit %s:\n%s\n' "$code" "$out" >&2
    exit 1
  fi
  out=${out#licet-manifest: error: }
  printf 'refused (exit 1): %s\n' "${out#licet-node: error: }"
}

if [ -n "${LICET_BIN_DIR:-}" ]; then
  # Binaries built already (the README test runs this script with the ones it tests).
  bin_dir=$(cd "$LICET_BIN_DIR" && pwd)
  say "using licet-manifest and licet-node in $bin_dir"
else
  say "building licet-manifest and licet-node (release; the first build takes about 10 minutes on 2 cores)"
  cargo build --release -p licet-manifest -p licet-node
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin_dir="$target_dir/release"
fi
licet_manifest="$bin_dir/licet-manifest"
licet_node="$bin_dir/licet-node"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

say "a publisher key (PKCS#8 PEM, mode 0600)"
publisher=$("$licet_manifest" keygen -o publisher.pem)
echo "publisher public key: $publisher"

say "a sample release: two episodes and subtitles"
mkdir -p release/subs
head -c 3145728 /dev/urandom > release/episode-1.mkv
head -c 1572864 /dev/urandom > release/episode-2.mkv
printf '1\n00:00:01,000 --> 00:00:02,000\nBonjour\n' > release/subs/episode-1.fr.srt
ls -lR release | sed 's/^/  /'

say "sign a manifest: licensed for 30 days in France and Belgium"
"$licet_manifest" create release --key publisher.pem --title "Sample series" \
  --not-after +30d --regions FR,BE --terms "Free to share for 30 days" -o sample.manifest

say "verify it: signature, licence window, and the content on disk"
"$licet_manifest" verify sample.manifest --publisher "$publisher" --content release --region FR

say "tampered content is refused"
cp -r release tampered
printf 'X' | dd of=tampered/episode-2.mkv bs=1 seek=1000000 conv=notrunc status=none
expect_refusal "$licet_manifest" verify sample.manifest --publisher "$publisher" --content tampered

say "a look-alike signed by a key we do not trust is refused"
"$licet_manifest" keygen -o pirate.pem > /dev/null
"$licet_manifest" create release --key pirate.pem --title "Sample series" -o lookalike.manifest > /dev/null
expect_refusal "$licet_manifest" verify lookalike.manifest --publisher "$publisher"

say "outside its region or window it is refused"
expect_refusal "$licet_manifest" verify sample.manifest --region US
expect_refusal "$licet_manifest" verify sample.manifest --at +31d

say "a partner signs in the publisher's name with a delegation"
partner=$("$licet_manifest" keygen -o partner.pem)
"$licet_manifest" delegate --key publisher.pem --to "$partner" --until +90d -o partner.delegation
"$licet_manifest" create release/episode-1.mkv --key partner.pem --delegation partner.delegation \
  --title "Sample series: episode 1 (partner edition)" -o partner.manifest
"$licet_manifest" verify partner.manifest --publisher "$publisher"

say "part 2: a swarm of three nodes on 127.0.0.1"
start_node() {
  # start_node NAME [flags...]: runs a daemon with its own data directory, waits for its API.
  local name=$1; shift
  # A demo on loopback: no LAN discovery, no router port mapping.
  RUST_LOG=warn "$licet_node" run --data-dir "$name" --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-upnp "$@" > "$name.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do [ -f "$name/api-addr" ] && return 0; sleep 0.1; done
  echo "node $name did not start:" >&2; cat "$name.log" >&2; exit 1
}
start_node node-a
seed_addr=$("$licet_node" --data-dir node-a status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["listen_addrs"][0])')
echo "node A listens on $seed_addr"
start_node node-b --bootstrap "$seed_addr" --region FR
start_node node-c --bootstrap "$seed_addr" --region US
echo "node B (region FR) and node C (region US) joined through A"

say "the nodes trust the publisher; A seeds the sample in place (no copy)"
"$licet_node" --data-dir node-a trust add "$publisher" --name "Sample publisher"
"$licet_node" --data-dir node-b trust add "$publisher" --name "Sample publisher"
"$licet_node" --data-dir node-c trust add "$publisher" --name "Sample publisher"
"$licet_node" --data-dir node-a add sample.manifest --content release
link="licet:$("$licet_manifest" inspect sample.manifest --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["derived"]["manifest_id"])')"

say "B fetches it by link through the DHT: every chunk is verified before it is written"
"$licet_node" --data-dir node-b get "$link" -o fetched
cmp release/episode-1.mkv fetched/episode-1.mkv && cmp release/episode-2.mkv fetched/episode-2.mkv \
  && echo "the fetched files are byte-identical to the publisher's"
"$licet_manifest" verify sample.manifest --publisher "$publisher" --content fetched | head -1
"$licet_node" --data-dir node-b ls

say "C refuses an unsigned look-alike (its signature does not verify)"
python3 - sample.manifest lookalike-unsigned.manifest <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
at = data.find(b"Sample series")
data[at:at + 6] = b"Pirate"
open(sys.argv[2], "wb").write(data)
PY
expect_refusal "$licet_node" --data-dir node-c add lookalike-unsigned.manifest --content release

say "C, in the US, refuses the release licensed for France and Belgium"
expect_refusal "$licet_node" --data-dir node-c get "$link" -o fetched-by-c

say "what node A served (its metrics; counters still at zero left out)"
curl_metrics() { python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://" + open(sys.argv[1]).read().strip() + "/metrics").read().decode())' "$1/api-addr"; }
curl_metrics node-a | grep -E '^licet_(chunks_served|bytes_out|refusals)' | grep -v ' 0$' || true

say "the rights holder signs a catalog listing both releases; A publishes it to the swarm"
"$licet_manifest" catalog new --key publisher.pem -o catalog.draft.json
"$licet_manifest" catalog add catalog.draft.json sample.manifest partner.manifest
"$licet_manifest" catalog sign catalog.draft.json --key publisher.pem --expires +7d -o catalog.1
"$licet_node" --data-dir node-a catalog publish catalog.1
"$licet_manifest" verify sample.manifest --catalog catalog.1 > /dev/null && echo "catalog 1: sample.manifest is served"

say "a takedown: catalog 2 withdraws the release and the partner's key; B stops serving at once"
"$licet_manifest" catalog revoke catalog.draft.json sample.manifest
"$licet_manifest" catalog revoke-delegate catalog.draft.json "$partner"
"$licet_manifest" catalog sign catalog.draft.json --key publisher.pem --expires +7d -o catalog.2
expect_refusal "$licet_manifest" verify sample.manifest --catalog catalog.2
expect_refusal "$licet_manifest" verify partner.manifest --catalog catalog.2
published_at=$(date +%s.%N)
"$licet_node" --data-dir node-a catalog publish catalog.2
refused=""
for _ in $(seq 100); do
  refused=$("$licet_node" --data-dir node-b ls --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["content"]; print((c[0]["refused"] or {}).get("reason", "") if c else "")')
  [ "$refused" = "Revoked" ] && break
  sleep 0.1
done
[ "$refused" = "Revoked" ] || { echo "node B did not take the takedown" >&2; exit 1; }
printf 'node B refuses the withdrawn release %.1f s after the takedown was published (it got the catalog by gossip)\n' \
  "$(python3 -c "import time,sys; print(time.time() - float(sys.argv[1]))" "$published_at")"
"$licet_node" --data-dir node-b ls

say "stopping the nodes"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" && echo "node $pid stopped cleanly"; done
pids=()

say "what a catalog says"
"$licet_manifest" inspect catalog.2

say "done: every step above ran the real binaries; the temporary files are removed"
echo "next: put licet-manifest and licet-node on your PATH ($bin_dir), then follow"
echo "\"The rights holder's flow, by hand\" and \"Running a node\" in README.md."
