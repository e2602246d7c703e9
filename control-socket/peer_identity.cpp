// SPDX-License-Identifier: BSD-3-Clause
// peer_identity.cpp — identity patterns (see peer_identity.h).
#include "peer_identity.h"

#include <algorithm>

namespace nbdsnap {

std::string PeerIdentity::describe() const {
  if (!psk_username.empty()) return "psk:" + psk_username;
  if (!dn.empty()) return "dn:" + dn;
  return local ? "local" : "anonymous";
}

bool identity_matches(const std::string& pattern, const PeerIdentity& peer) {
  if (pattern == "*") return true;
  if (pattern == "local") return peer.local;
  if (pattern.starts_with("psk:"))
    return !peer.psk_username.empty() && pattern.substr(4) == peer.psk_username;
  if (pattern.starts_with("dn:")) return !peer.dn.empty() && pattern.substr(3) == peer.dn;
  if (pattern.starts_with("san:")) {
    return std::find(peer.sans.begin(), peer.sans.end(), pattern.substr(4)) != peer.sans.end();
  }
  return false;
}

bool valid_identity_pattern(const std::string& pattern, std::string& error) {
  if (pattern == "*" || pattern == "local") return true;
  for (const char* prefix : {"psk:", "dn:", "san:"}) {
    const std::string text(prefix);
    if (pattern.starts_with(text)) {
      if (pattern.size() > text.size()) return true;
      error = "identity '" + pattern + "' names nobody: give a value after '" + text + "'";
      return false;
    }
  }
  error = "identity '" + pattern + "' is not psk:NAME, dn:DN, san:NAME, local or *";
  return false;
}

}  // namespace nbdsnap
