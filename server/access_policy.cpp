// SPDX-License-Identifier: BSD-3-Clause
// access_policy.cpp — allow rules and origins over TCP (see access_policy.h).
#include "access_policy.h"

#include <fnmatch.h>

#include "export_name.h"

namespace nbdsnap {

bool parse_access_rule(const std::string& text, AccessRule& out, std::string& error) {
  const auto blank = text.find_first_of(" \t");
  const auto identity = blank == std::string::npos ? std::string::npos : text.find_first_not_of(" \t", blank);
  if (blank == 0 || identity == std::string::npos) {
    error = "expected 'EXPORT-PATTERN IDENTITY' (e.g. 'disk0@* psk:agent1')";
    return false;
  }
  out.pattern = text.substr(0, blank);
  out.identity = text.substr(identity);
  while (!out.identity.empty() && (out.identity.back() == ' ' || out.identity.back() == '\t'))
    out.identity.pop_back();
  return valid_identity_pattern(out.identity, error);
}

std::string AccessPolicy::refusal(const std::string& export_name, const PeerIdentity& peer,
                                  bool over_tcp) const {
  ExportName parsed;
  const bool origin = parse_export_name(export_name, parsed).is_ok() && !parsed.is_image();
  if (origin && over_tcp && !tcp_origins) {
    return "origin '" + export_name + "' is not served over TCP, only its snapshot images are " +
           "(nbdsnapd --tcp-origins serves origins over TCP)";
  }
  if (rules.empty()) return {};
  for (const AccessRule& rule : rules) {
    if (::fnmatch(rule.pattern.c_str(), export_name.c_str(), 0) == 0 && identity_matches(rule.identity, peer))
      return {};
  }
  return peer.describe() + " may not open export '" + export_name +
         "': no allow rule names it (nbdsnapd allow)";
}

}  // namespace nbdsnap
