#!/usr/bin/env bash
# Licet quick start: the rights holder's flow with the real binary, start to finish.
# Builds licet-manifest, then in a temporary directory: makes a publisher key, signs a sample
# release, verifies it, shows that tampered content and a look-alike signed by an unknown key
# are refused, delegates to a partner, and withdraws a release through a signed catalog.
# Everything it creates is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
expect_refusal() {
  # Runs a command that must fail with exit 1 (a verification or policy refusal) and shows why.
  local out code=0
  out=$("$@" 2>&1) || code=$?
  if [ "$code" -ne 1 ]; then
    printf 'expected a refusal (exit 1), got exit %s:\n%s\n' "$code" "$out" >&2
    exit 1
  fi
  printf 'refused (exit 1): %s\n' "${out#licet-manifest: error: }"
}

say "building licet-manifest (release)"
cargo build --release -p licet-manifest --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
licet_manifest="$target_dir/release/licet-manifest"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

say "the publisher's catalog lists both; then a takedown withdraws the release"
"$licet_manifest" catalog new --key publisher.pem -o catalog.draft.json
"$licet_manifest" catalog add catalog.draft.json sample.manifest partner.manifest
"$licet_manifest" catalog sign catalog.draft.json --key publisher.pem --expires +7d -o catalog.1
"$licet_manifest" verify sample.manifest --catalog catalog.1 > /dev/null && echo "catalog 1: sample.manifest is served"
"$licet_manifest" catalog revoke catalog.draft.json sample.manifest
"$licet_manifest" catalog revoke-delegate catalog.draft.json "$partner"
"$licet_manifest" catalog sign catalog.draft.json --key publisher.pem --expires +7d -o catalog.2
expect_refusal "$licet_manifest" verify sample.manifest --catalog catalog.2
expect_refusal "$licet_manifest" verify partner.manifest --catalog catalog.2

say "what a catalog says"
"$licet_manifest" inspect catalog.2

say "done: every step above ran the real binary; the temporary files are removed"
