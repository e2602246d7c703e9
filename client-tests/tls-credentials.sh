#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# tls-credentials.sh — makes throw-away TLS credentials for the tests with GnuTLS's own tools (gnutls-bin),
# in the layouts nbdkit, QEMU and libnbd read:
#   tls-credentials.sh x509 DIR [CLIENT_CN]   a CA, a server certificate for localhost/127.0.0.1, and a client
#                                             certificate (CN=CLIENT_CN,O=nbdsnap test; SAN CLIENT_CN.test):
#                                             DIR/{ca-cert,server-cert,server-key,client-cert,client-key}.pem
#   tls-credentials.sh psk FILE USER...       a PSK file with one random key per USER (psktool)
# ECDSA keys: generated in milliseconds, where RSA ones take seconds. Certificates expire after 2 days.
set -euo pipefail
command -v certtool >/dev/null && command -v psktool >/dev/null || {
  echo "tls-credentials.sh: certtool and psktool are needed (Debian package gnutls-bin)" >&2
  exit 77
}

key() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }

x509() {
  local dir=$1 client=${2:-agent1}
  mkdir -p "$dir"
  key "$dir/ca-key.pem"
  printf 'cn = nbdsnap test CA %s\nca\ncert_signing_key\nexpiration_days = 2\n' "$RANDOM" >"$dir/ca.info"
  certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" --template "$dir/ca.info" \
    --outfile "$dir/ca-cert.pem" 2>/dev/null
  key "$dir/server-key.pem"
  printf 'organization = nbdsnap test\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n%s\n' \
    'tls_www_server
encryption_key
signing_key
expiration_days = 2' >"$dir/server.info"
  certtool --generate-certificate --load-privkey "$dir/server-key.pem" --load-ca-certificate "$dir/ca-cert.pem" \
    --load-ca-privkey "$dir/ca-key.pem" --template "$dir/server.info" --outfile "$dir/server-cert.pem" 2>/dev/null
  key "$dir/client-key.pem"
  printf 'organization = nbdsnap test\ncn = %s\ndns_name = %s.test\n%s\n' "$client" "$client" \
    'tls_www_client
encryption_key
signing_key
expiration_days = 2' >"$dir/client.info"
  certtool --generate-certificate --load-privkey "$dir/client-key.pem" --load-ca-certificate "$dir/ca-cert.pem" \
    --load-ca-privkey "$dir/ca-key.pem" --template "$dir/client.info" --outfile "$dir/client-cert.pem" 2>/dev/null
  rm -f "$dir"/*.info
}

psk() {
  local file=$1 user
  shift
  for user in "$@"; do psktool -u "$user" -p "$file" >/dev/null; done
}

case ${1:-} in
  x509) shift; x509 "$@" ;;
  psk) shift; psk "$@" ;;
  *) echo "usage: $0 x509 DIR [CLIENT_CN] | psk FILE USER..." >&2; exit 2 ;;
esac
