// SPDX-License-Identifier: BSD-3-Clause
// tls_credentials.cpp — loading X.509 and PSK credentials with GnuTLS (see tls_credentials.h).
#include "tls_credentials.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "mutex.h"

namespace nbdsnap {

namespace {

// TLS 1.2 and 1.3 only (NBD proto.md, "TLS versions": 1.2 is required, older ones not by default); the PSK
// suites are added only where PSK credentials exist, as nbdkit and QEMU do. A server picks by its own order
// (%SERVER_PRECEDENCE), with ChaCha20 last: a TLS 1.3 PSK session needs a SHA-256 suite, and by the client's
// order (libnbd's and QEMU's follow GnuTLS's NORMAL) that is CHACHA20-POLY1305 before AES-128-GCM; with AES
// instructions AES-GCM costs server and client far less CPU per byte (bench/tls-read: the server's CPU per
// GiB read fell from 2.9 s to 1.2 s).
constexpr const char* kPriorityX509 = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
constexpr const char* kPriorityPsk = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK:+PSK";
constexpr const char* kServerPreference = ":-CHACHA20-POLY1305:+CHACHA20-POLY1305:%SERVER_PRECEDENCE";

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status gnutls_failure(int rc, const std::string& what) {
  return {Errc::invalid_argument, what + ": " + gnutls_strerror(rc)};
}

// A file named in the options must exist and be readable before GnuTLS gets it: its errors ("Error while
// reading file") do not say which.
Status check_readable(const std::string& path, const std::string& role) {
  std::ifstream probe(path);
  if (probe) return Status::ok();
  const int err = errno;
  if (err == ENOENT) return {Errc::not_found, role + " " + path + " does not exist"};
  return Status::from_errno(err, "cannot read " + role + " " + path);
}

bool is_hex(const std::string& text) {
  if (text.empty() || text.size() % 2 != 0) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Calls `entry(user, hex_key)` for each `username:hexkey` line of a PSK file (blank lines and # comments are
// skipped); a malformed line is an error naming the file and line.
template <typename OnEntry>
Status for_each_psk_entry(const std::string& path, OnEntry entry) {
  if (Status s = check_readable(path, "PSK file"); !s) return s;
  std::ifstream file(path);
  std::string line;
  unsigned number = 0;
  while (std::getline(file, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || !is_hex(line.substr(colon + 1))) {
      return {Errc::invalid_argument, "PSK file " + path + " line " + std::to_string(number) +
                                          ": expected username:hexkey (as psktool -u NAME -p FILE writes)"};
    }
    entry(line.substr(0, colon), line.substr(colon + 1));
  }
  return Status::ok();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;  // is_hex() checked it
}

// A server's PSK keys (binary), by its GnuTLS credentials object. GnuTLS's key callback has no user pointer,
// but it can ask the session for its credentials. Keys live here rather than in GnuTLS's file reader so that
// the keys a handshake uses are exactly the ones load() checked (the file reader re-reads the file at each
// handshake, so a reload that "kept the previous keys" did not, and CRLF lines passed the check but not
// GnuTLS).
struct PskKeyTable {
  Mutex mutex;
  std::map<const void*, std::map<std::string, std::string>> keys GUARDED_BY(mutex);
};

PskKeyTable& psk_key_table() {
  static PskKeyTable table;
  return table;
}

thread_local PskLookup last_psk_lookup;

int server_psk_key(gnutls_session_t session, const char* username, gnutls_datum_t* key) {
  void* cred = nullptr;
  if (gnutls_credentials_get(session, GNUTLS_CRD_PSK, &cred) < 0 || username == nullptr) return -1;
  last_psk_lookup = {true, false, username};
  PskKeyTable& table = psk_key_table();
  MutexLock lock(table.mutex);
  const auto keys = table.keys.find(cred);
  if (keys == table.keys.end()) return -1;
  const auto found = keys->second.find(username);
  if (found == keys->second.end()) return -1;
  last_psk_lookup.known = true;
  key->data = static_cast<unsigned char*>(gnutls_malloc(found->second.size()));
  if (key->data == nullptr) return -1;
  std::memcpy(key->data, found->second.data(), found->second.size());
  key->size = unsigned(found->second.size());
  return 0;
}

}  // namespace

PskLookup take_psk_lookup() {
  return std::exchange(last_psk_lookup, PskLookup{});
}

Status read_psk_entry(const std::string& path, std::string& username, std::string& hex_key) {
  unsigned entries = 0;
  bool found = false;
  std::string only_user, only_key;
  Status read = for_each_psk_entry(path, [&](const std::string& user, const std::string& key) {
    ++entries;
    only_user = user;
    only_key = key;
    if (!found && !username.empty() && user == username) {
      hex_key = key;
      found = true;
    }
  });
  if (!read || found) return read;
  if (!username.empty()) {
    return {Errc::not_found, "PSK file " + path + " has no key for username '" + username + "'"};
  }
  if (entries != 1) {
    return {Errc::invalid_argument,
            "PSK file " + path + " holds " + std::to_string(entries) +
                " keys: name the one to use as USER@ in the address (tls://USER@HOST:PORT)"};
  }
  username = only_user;
  hex_key = only_key;
  return Status::ok();
}

Status TlsCredentials::load(TlsEndpoint endpoint, const TlsOptions& options,
                            std::shared_ptr<const TlsCredentials>& out) {
  if (!options.enabled()) {
    return {Errc::invalid_argument, "TLS needs credentials: --tls-certificates DIR or --tls-psk FILE"};
  }
  std::shared_ptr<TlsCredentials> loaded(new TlsCredentials(endpoint, options));
  if (!options.certificates_dir.empty()) {
    if (Status s = loaded->load_x509(); !s) return s;
  }
  if (!options.psk_file.empty()) {
    if (Status s = loaded->load_psk(); !s) return s;
  }
  if (Status s = loaded->load_priority(); !s) return s;
  out = std::move(loaded);
  return Status::ok();
}

TlsCredentials::~TlsCredentials() {
  if (x509_ != nullptr)
    gnutls_certificate_free_credentials(static_cast<gnutls_certificate_credentials_t>(x509_));
  if (psk_ != nullptr) {
    if (endpoint_ == TlsEndpoint::server) {
      {
        PskKeyTable& table = psk_key_table();
        MutexLock lock(table.mutex);
        table.keys.erase(psk_);
      }
      gnutls_psk_free_server_credentials(static_cast<gnutls_psk_server_credentials_t>(psk_));
    } else {
      gnutls_psk_free_client_credentials(static_cast<gnutls_psk_client_credentials_t>(psk_));
    }
  }
  if (priority_ != nullptr) gnutls_priority_deinit(static_cast<gnutls_priority_t>(priority_));
}

Status TlsCredentials::load_x509() {
  const std::string& dir = options_.certificates_dir;
  gnutls_certificate_credentials_t cred = nullptr;
  if (int rc = gnutls_certificate_allocate_credentials(&cred); rc < 0)
    return gnutls_failure(rc, "X.509 credentials");
  x509_ = cred;
  const std::string ca = dir + "/ca-cert.pem";
  const bool server = endpoint_ == TlsEndpoint::server;
  if (file_exists(ca)) {
    if (int rc = gnutls_certificate_set_x509_trust_file(cred, ca.c_str(), GNUTLS_X509_FMT_PEM); rc < 0) {
      return gnutls_failure(rc, "CA certificate " + ca);
    }
  } else if (!server || options_.verify_peer) {
    // A client must verify the server, and a server verifying its clients needs the CA that signs them.
    return {Errc::not_found, "CA certificate " + ca + " does not exist (needed to verify the " +
                                 std::string(server ? "clients" : "server") + ")"};
  }
  const std::string crl = dir + "/ca-crl.pem";
  if (file_exists(crl)) {
    if (int rc = gnutls_certificate_set_x509_crl_file(cred, crl.c_str(), GNUTLS_X509_FMT_PEM); rc < 0) {
      return gnutls_failure(rc, "revocation list " + crl);
    }
  }
  const std::string prefix = dir + (server ? "/server-" : "/client-");
  const std::string cert = prefix + "cert.pem", key = prefix + "key.pem";
  if (!server && !file_exists(cert)) return Status::ok();  // a client certificate is optional
  if (Status s = check_readable(cert, "certificate"); !s) return s;
  if (Status s = check_readable(key, "private key"); !s) return s;
  if (int rc = gnutls_certificate_set_x509_key_file(cred, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
      rc < 0) {
    return gnutls_failure(rc, "certificate " + cert + " with key " + key);
  }
  if (server) gnutls_certificate_set_known_dh_params(cred, GNUTLS_SEC_PARAM_MEDIUM);
  return Status::ok();
}

Status TlsCredentials::load_psk() {
  const std::string& path = options_.psk_file;
  if (endpoint_ == TlsEndpoint::server) {
    // Every line is checked and decoded now; handshakes use these keys until a reload succeeds (SIGHUP), so
    // keys added to the file need a reload.
    std::map<std::string, std::string> keys;
    Status read = for_each_psk_entry(path, [&keys](const std::string& user, const std::string& hex) {
      std::string binary(hex.size() / 2, '\0');
      for (size_t i = 0; i < binary.size(); ++i) {
        binary[i] = char(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
      }
      keys.emplace(user, std::move(binary));  // the first line of a user wins, as GnuTLS's reader did
    });
    if (!read) return read;
    if (keys.empty())
      return {Errc::invalid_argument, "PSK file " + path + " holds no keys (psktool -u NAME -p FILE)"};
    for (const auto& [user, key] : keys) psk_usernames_.push_back(user);
    gnutls_psk_server_credentials_t cred = nullptr;
    if (int rc = gnutls_psk_allocate_server_credentials(&cred); rc < 0)
      return gnutls_failure(rc, "PSK credentials");
    psk_ = cred;
    gnutls_psk_set_server_credentials_function(cred, server_psk_key);
    gnutls_psk_set_server_known_dh_params(cred, GNUTLS_SEC_PARAM_MEDIUM);
    PskKeyTable& table = psk_key_table();
    MutexLock lock(table.mutex);
    table.keys[cred] = std::move(keys);
    return Status::ok();
  }
  std::string username = options_.psk_username, hex_key;
  if (Status s = read_psk_entry(path, username, hex_key); !s) return s;
  gnutls_psk_client_credentials_t cred = nullptr;
  if (int rc = gnutls_psk_allocate_client_credentials(&cred); rc < 0)
    return gnutls_failure(rc, "PSK credentials");
  psk_ = cred;
  client_psk_username_ = username;
  const gnutls_datum_t key{reinterpret_cast<unsigned char*>(hex_key.data()), unsigned(hex_key.size())};
  if (int rc = gnutls_psk_set_client_credentials(cred, username.c_str(), &key, GNUTLS_PSK_KEY_HEX); rc < 0) {
    return gnutls_failure(rc, "PSK key of '" + username + "' in " + path);
  }
  return Status::ok();
}

Status TlsCredentials::load_priority() {
  gnutls_priority_t priority = nullptr;
  std::string text = has_psk() ? kPriorityPsk : kPriorityX509;
  if (endpoint_ == TlsEndpoint::server) text += kServerPreference;
  if (int rc = gnutls_priority_init(&priority, text.c_str(), nullptr); rc < 0) {
    return gnutls_failure(rc, "TLS priority " + text);
  }
  priority_ = priority;
  return Status::ok();
}

Status TlsCredentialStore::reload() {
  std::shared_ptr<const TlsCredentials> loaded;
  if (Status s = TlsCredentials::load(endpoint_, options_, loaded); !s) return s;
  MutexLock lock(mutex_);
  current_ = std::move(loaded);
  return Status::ok();
}

std::shared_ptr<const TlsCredentials> TlsCredentialStore::current() const {
  MutexLock lock(mutex_);
  return current_;
}

}  // namespace nbdsnap
