#!/usr/bin/env bash
# Builds fuzz/corpus/<target>/ seed inputs from the client bytes captured for the plugins' tests
# (plugins/*/tests/data/*.bin), the shipped configurations, and a few PROXY headers. Idempotent:
# files are named by content, and what the fuzzer added stays.
set -euo pipefail
cd "$(dirname "$0")"
root=..
captures=("$root"/plugins/*/tests/data/*.bin)

# put TARGET FILE...: copies each file into the target's corpus under its content hash.
put() {
  local target=$1
  shift
  mkdir -p "corpus/$target"
  local f
  for f in "$@"; do
    cp "$f" "corpus/$target/seed-$(sha1sum <"$f" | cut -c1-16)"
  done
}

# put_bytes TARGET: stores stdin as one seed.
put_bytes() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp"
  put "$1" "$tmp"
  rm -f "$tmp"
}

# Every plugin's detector sees every protocol's captures: its own to go deep, the others to check
# that it refuses them.
for target_file in fuzz_targets/detect_*.rs; do
  put "$(basename "$target_file" .rs)" "${captures[@]}"
done

# The same bytes under non-default [backend.params] (the `#params` form of pmmux_fuzz::split_params).
params_seed() {
  local target=$1 params=$2 capture=$3
  { printf '#params\n%s\n#end\n' "$params"; cat "$capture"; } | put_bytes "$target"
}
params_seed detect_dns 'name_suffix = ["example.net", "in-addr.arpa"]
qtype = ["A", "AAAA", "TYPE65"]' "$root/plugins/dns/tests/data/udp_a.bin"
params_seed detect_tls 'sni = ["*.example", "a.example"]
alpn = ["h2", "http/1.1"]
min_version = "1.2"' "$root/plugins/tls/tests/data/curl.bin"
params_seed detect_quic 'sni = "*.example"
alpn = "h3"' "$root/plugins/quic/tests/data/quinn_v1.bin"
params_seed detect_dtls 'sni = "*.example"' "$root/plugins/dtls/tests/data/openssl_dtls12.bin"
params_seed detect_http 'host = ["a.example", "*.b.example"]
path_prefix = "/api/"' "$root/plugins/http/tests/data/curl_get.bin"
params_seed detect_http_response 'status = 404
body = "gone"
content_type = "text/plain"
host = "a.example"' "$root/plugins/http/tests/data/curl_get.bin"
params_seed detect_regex "patterns = ['^\\x16\\x03', '(?i)^helo ']
min_length = 4" "$root/plugins/regex/tests/data/openssh_banner.bin"
params_seed detect_anyprot 'min_length = 3' "$root/plugins/redis/tests/data/ping.bin"
params_seed detect_wireguard 'handshake_only = true' "$root/plugins/openvpn/tests/data/udp_plain.bin"
params_seed detect_xmpp 'to = ["localhost"]' "$root/plugins/xmpp/tests/data/sendxmpp_stream.bin"
params_seed detect_rdp 'mstshash = ["alice"]' "$root/plugins/rdp/tests/data/xfreerdp_alice.bin"
params_seed detect_smb 'dialect = ["smb2"]' "$root/plugins/smb/tests/data/smb2_negotiate.bin"
params_seed detect_stun 'methods = ["binding", "allocate"]' "$root/plugins/stun/tests/data/turn_allocate_udp.bin"
params_seed detect_postgres 'user = ["alice"]' "$root/plugins/postgres/tests/data/startup.bin"

# TLS ClientHellos as records (TCP) and, without the 5-byte record header, as handshake messages.
tls_hellos=("$root"/plugins/tls/tests/data/*.bin "$root"/plugins/regex/tests/data/openssl_client_hello.bin)
put tls_client_hello "${tls_hellos[@]}" "$root"/plugins/dtls/tests/data/*.bin
for f in "${tls_hellos[@]}"; do
  tail -c +6 "$f" | put_bytes tls_client_hello
done

# QUIC: raw captured datagrams (mode 0), and the TLS hellos as CRYPTO data (mode 1, several chunk
# sizes and orders) and as a frame sequence (mode 2: PADDING, PING, CRYPTO at offset 0).
for f in "$root"/plugins/quic/tests/data/*.bin; do
  { printf '\x00'; cat "$f"; } | put_bytes quic_initial
done
for f in "${tls_hellos[@]}"; do
  for mode in '\x01' '\x0d' '\x19' '\x9a' '\x49'; do
    { printf "$mode"; tail -c +6 "$f"; } | put_bytes quic_initial
  done
  len=$(($(stat -c %s "$f") - 5))
  { printf '\x02\x00\x01\x06\x00'; printf "\\x$(printf %02x $((0x40 | len >> 8)))\\x$(printf %02x $((len & 0xff)))"; tail -c +6 "$f"; } |
    put_bytes quic_initial
done

put dns_message "$root"/plugins/dns/tests/data/*.bin
put http_request "$root"/plugins/http/tests/data/*.bin "$root"/plugins/http-response/tests/data/*.bin

printf 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n' | put_bytes proxy_protocol
printf 'PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n' | put_bytes proxy_protocol
printf 'PROXY UNKNOWN\r\n' | put_bytes proxy_protocol
# v2: PROXY over TCP4, 12 bytes of addresses plus an ALPN TLV ("h2") and an AUTHORITY TLV.
printf '\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x1b\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb\x01\x00\x02h2\x02\x00\x04a.ex' |
  put_bytes proxy_protocol
# v2: PROXY over TCP6, no TLV; and LOCAL.
{ printf '\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24'; printf '\x20\x01\x0d\xb8%.0s' 1 2 3 4 5 6 7 8; printf '\x0f\xa0\x01\xbb'; } |
  put_bytes proxy_protocol
printf '\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00' | put_bytes proxy_protocol

put config "$root"/config/*.toml
printf '[[listener]]\nname = "{{env:PMMUX_FUZZ_QUOTES}}"\naddress = "{{env:PMMUX_FUZZ_PLAIN}}"\ntransport = ["tcp", "udp"]\n[[backend]]\nname = "b"\nprotocol = "{{env:NOPE:-http}}"\ntarget = "127.0.0.1:{{env:PMMUX_FUZZ_LINES}}"\n' |
  put_bytes config
# Inputs that once crashed a target (kept in the repo, fuzz/regressions/<target>/): every run
# replays them first.
for dir in regressions/*/; do
  [ -d "$dir" ] && put "$(basename "$dir")" "$dir"*
done
echo "seeds: $(find corpus -type f | wc -l) files in $(find corpus -mindepth 1 -maxdepth 1 -type d | wc -l) corpora"
