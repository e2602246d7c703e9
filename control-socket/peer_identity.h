// SPDX-License-Identifier: BSD-3-Clause
// peer_identity.h — who is at the other end of a connection, and the one rule that matches an identity in
// the configuration (export allow-lists, control roles) against it.
//
// Identities in the configuration:
//   psk:NAME   a TLS client that authenticated with the PSK of username NAME
//   dn:DN      a TLS client whose verified certificate has subject DN (RFC 4514, as `certtool -i` prints it:
//              "CN=agent1,O=Example"), compared exactly
//   san:NAME   a TLS client whose verified certificate lists NAME among its subject alternative names
//              (DNS name, IP address, e-mail or URI)
//   local      a client on a Unix socket without TLS (file permissions decide who can connect there)
//   *          anyone, including clients without TLS on TCP
// Certificates count only when verified against the CA (nbdsnapd --tls-verify-peer); an unverified one is
// no identity at all.
#pragma once

#include <string>
#include <vector>

namespace nbdsnap {

struct PeerIdentity {
  bool local = false;             // a Unix socket client without TLS
  std::string psk_username;       // set for a PSK session
  std::string dn;                 // a verified client certificate's subject
  std::vector<std::string> sans;  // ... and its subject alternative names
  // "psk:agent1", "dn:CN=agent1,O=Example", "local", or "anonymous" (plain TCP, unverified TLS): for logs.
  std::string describe() const;
};

// Whether `pattern` (one of the forms above) names this peer.
bool identity_matches(const std::string& pattern, const PeerIdentity& peer);
// Whether `pattern` is one of the forms above; else `error` says what is expected.
bool valid_identity_pattern(const std::string& pattern, std::string& error);

}  // namespace nbdsnap
