// SPDX-License-Identifier: BSD-3-Clause
// tls_credentials.h — GnuTLS credentials loaded from the files nbdkit, QEMU and libnbd use, for a server or a
// client endpoint, and a store that swaps them on reload while sessions keep the ones they started with.
//
// X.509: a directory holding ca-cert.pem (the CA that signs peers; needed to verify them), server-cert.pem
// and server-key.pem (server), client-cert.pem and client-key.pem (client, optional unless the server
// verifies clients); ca-crl.pem is read when present. PSK: a file of `username:hexkey` lines as psktool
// writes them. Loading reads every file at once, so a bad file is reported when the option is given, not at
// the first client. Credentials are immutable once loaded and may be used by any number of sessions on any
// threads (GnuTLS: read-only credentials are thread-safe).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mutex.h"
#include "status.h"

namespace nbdsnap {

enum class TlsEndpoint { server, client };

struct TlsOptions {
  std::string certificates_dir;  // X.509 directory; empty: none
  std::string psk_file;          // PSK file; empty: none
  bool verify_peer = false;      // server: require a client certificate signed by ca-cert.pem
  std::string psk_username;      // client: the PSK identity; empty: the file's only entry
  bool enabled() const { return !certificates_dir.empty() || !psk_file.empty(); }
};

class TlsCredentials {
 public:
  // Loads the credentials `options` name for one endpoint. Errors: invalid_argument (no credentials named, a
  // malformed PSK file, a missing username), not_found / io_error (a file that cannot be read), and GnuTLS's
  // message for keys and certificates it refuses; every message names the file.
  static Status load(TlsEndpoint endpoint, const TlsOptions& options,
                     std::shared_ptr<const TlsCredentials>& out);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  TlsEndpoint endpoint() const { return endpoint_; }
  const TlsOptions& options() const { return options_; }
  bool has_x509() const { return x509_ != nullptr; }
  bool has_psk() const { return psk_ != nullptr; }
  // The GnuTLS objects (gnutls_certificate_credentials_t, gnutls_psk_{server,client}_credentials_t,
  // gnutls_priority_t), for TlsSession only.
  void* x509() const { return x509_; }
  void* psk() const { return psk_; }
  void* priority() const { return priority_; }
  // Client: the PSK identity it offers (options().psk_username, or the file's only user); else empty.
  const std::string& client_psk_username() const { return client_psk_username_; }
  // Server: the PSK usernames of the key file, sorted (for checking the rules that name them).
  const std::vector<std::string>& psk_usernames() const { return psk_usernames_; }

 private:
  TlsCredentials(TlsEndpoint endpoint, TlsOptions options)
      : endpoint_(endpoint), options_(std::move(options)) {}
  Status load_x509();
  Status load_psk();
  Status load_priority();

  const TlsEndpoint endpoint_;
  const TlsOptions options_;
  void* x509_ = nullptr;
  void* psk_ = nullptr;
  void* priority_ = nullptr;
  std::string client_psk_username_;
  std::vector<std::string> psk_usernames_;
};

// The credentials a server hands to new sessions. reload() reads the files again and, only if that works,
// replaces them: sessions already running keep theirs. Thread-safe.
class TlsCredentialStore {
 public:
  TlsCredentialStore(TlsEndpoint endpoint, TlsOptions options)
      : endpoint_(endpoint), options_(std::move(options)) {}
  // The first load (same errors as TlsCredentials::load).
  Status load() { return reload(); }
  // On failure the previous credentials stay in use; the Status says what is wrong with the files.
  Status reload() EXCLUDES(mutex_);
  // The credentials for a new session; null before a successful load().
  std::shared_ptr<const TlsCredentials> current() const EXCLUDES(mutex_);
  const TlsOptions& options() const { return options_; }

 private:
  const TlsEndpoint endpoint_;
  const TlsOptions options_;
  mutable Mutex mutex_;  // a leaf lock
  std::shared_ptr<const TlsCredentials> current_ GUARDED_BY(mutex_);
};

// A server's PSK key look-up during a handshake: the identity the client offered and whether the key file
// holds it (for explaining a failed handshake, tls_failure.h).
struct PskLookup {
  bool happened = false;
  bool known = false;
  std::string username;
};
// The look-up the last GnuTLS call on this thread made, cleared by reading it. A session reads it right after
// each gnutls_handshake() step, which is where GnuTLS calls the key function, on the calling thread.
PskLookup take_psk_lookup();

// Reads `username:hexkey` lines. Returns the key of `username` (or of the only entry when username is empty,
// setting it). Errors name the file and line.
Status read_psk_entry(const std::string& path, std::string& username, std::string& hex_key);

}  // namespace nbdsnap
