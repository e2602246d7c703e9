// SPDX-License-Identifier: BSD-3-Clause
// tls_transport.cpp — the TLS transport: nbdsnapd's remote control listener (--control-listen) reached over
// TCP with TLS, through the project's GnuTLS line client (control-socket/tls_line_client.h), so the CLI,
// agents and nbdsnapd share one TLS implementation. See nbdsnap/transport.h.
#include <algorithm>
#include <cerrno>

#include "client_failure.h"
#include "nbdsnap/transport.h"
#include "tls_line_client.h"

namespace nbdsnap::client {

namespace {

class TlsTransport final : public Transport {
 public:
  TlsTransport(TlsAddress address, std::shared_ptr<const TlsCredentials> credentials)
      : address_(std::move(address)), credentials_(std::move(credentials)) {}

  Result<void> connect(Deadline deadline) override {
    const auto timeout =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    Status status = TlsLineClient::connect(address_, credentials_,
                                           std::max(timeout, std::chrono::milliseconds(0)), line_client_);
    if (status) return {};
    // The line client does not tell a deadline from other failures here; the clock does.
    if (std::chrono::steady_clock::now() >= deadline) {
      return client_failure(kTimeout, ETIMEDOUT,
                            "no TCP connection or TLS handshake in time (" + status.message() + ")");
    }
    return client_failure(kConnectionFailed, to_errno(status), status.message());
  }

  Result<void> send_line(std::string_view line, Deadline deadline) override {
    if (line.ends_with('\n')) line.remove_suffix(1);  // the line client adds its own
    Status status = line_client_->send_line(std::string(line), deadline);
    if (status) return {};
    return failure(status);
  }

  Result<std::string> receive_line(Deadline deadline) override {
    std::string line;
    Status status = line_client_->receive_line(line, deadline);
    if (status) return line;
    return failure(status);
  }

  std::string endpoint() const override { return "remote control " + address_.text(); }

 private:
  Error failure(const Status& status) const {
    if (line_client_->timed_out()) return client_failure(kTimeout, ETIMEDOUT, status.message());
    return client_failure(kConnectionLost, to_errno(status), status.message());
  }

  TlsAddress address_;
  std::shared_ptr<const TlsCredentials> credentials_;
  std::unique_ptr<TlsLineClient> line_client_;
};

}  // namespace

bool is_tls_address(const std::string& address) {
  return nbdsnap::is_tls_address(address);
}

Result<std::unique_ptr<Transport>> tls_transport(const std::string& address, const TlsFiles& files) {
  TlsAddress parsed;
  if (Status s = parse_tls_address(address, parsed); !s)
    return client_failure(kInvalidRequest, EINVAL, s.message());
  TlsOptions options;
  options.certificates_dir = files.certificates_dir;
  options.psk_file = files.psk_file;
  options.psk_username = parsed.user;
  if (!options.enabled()) {
    return client_failure(
        kInvalidRequest, EINVAL,
        address + ": a tls:// address needs a certificates directory or a PSK file (TlsFiles)");
  }
  std::shared_ptr<const TlsCredentials> credentials;
  if (Status s = TlsCredentials::load(TlsEndpoint::client, options, credentials); !s) {
    return client_failure(kBadCredentials, to_errno(s), s.message());
  }
  return std::unique_ptr<Transport>(
      std::make_unique<TlsTransport>(std::move(parsed), std::move(credentials)));
}

}  // namespace nbdsnap::client
