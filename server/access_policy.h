// SPDX-License-Identifier: BSD-3-Clause
// access_policy.h — which client may open which export of nbdsnapd: allow rules from the configuration
// (`allow = EXPORT-PATTERN IDENTITY`, repeatable) and whether origins are served over TCP at all.
//
// Rules: with no allow rule, every client may open every export (as before access control existed). With
// one or more, a client may open an export only if a rule's pattern (shell glob, fnmatch(3): `disk0@*` is
// every image of disk0, `*@*` every image) matches the export name and its identity names the client
// (peer_identity.h: psk:NAME, dn:DN, san:NAME, local, *). Independently, an origin (a name without '@') is
// refused to clients on TCP unless tcp_origins is set: remote agents read images; an origin over TCP would
// let a network peer write a live disk, so that takes an explicit `--tcp-origins`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "handshake.h"
#include "peer_identity.h"

namespace nbdsnap {

struct AccessRule {
  std::string pattern;   // export names, fnmatch(3)
  std::string identity;  // who (peer_identity.h)
};

// "PATTERN IDENTITY" (the identity is everything after the first blank, so DNs may hold spaces).
bool parse_access_rule(const std::string& text, AccessRule& out, std::string& error);

struct AccessPolicy {
  std::vector<AccessRule> rules;
  bool tcp_origins = false;
  // Empty when `peer` may open `export_name`; else why not, naming the peer and the option to change.
  std::string refusal(const std::string& export_name, const PeerIdentity& peer, bool over_tcp) const;
};

// One client's view of the policy, for its handshake.
class ClientAccess final : public ExportAccess {
 public:
  ClientAccess(std::shared_ptr<const AccessPolicy> policy, PeerIdentity peer, bool over_tcp)
      : policy_(std::move(policy)), peer_(std::move(peer)), over_tcp_(over_tcp) {}
  std::string refusal(const std::string& export_name) const override {
    return policy_->refusal(export_name, peer_, over_tcp_);
  }

 private:
  std::shared_ptr<const AccessPolicy> policy_;
  PeerIdentity peer_;
  bool over_tcp_;
};

}  // namespace nbdsnap
