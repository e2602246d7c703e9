// filter_front_end.h — what the control protocol needs to know about the nbdkit side: clients and URIs.
//
// Keeps the registry of open connections (which export, which origin), so `origins` can report client counts
// and `origin-detach` can refuse or cut off the writers of an origin before the engine forgets it.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "control.h"
#include "engine.h"

namespace nbdsnap {

class FilterFrontEnd final : public ControlFrontEnd {
 public:
  // startup_dir resolves a relative nbdkit socket path; control_socket is skipped when looking for it.
  FilterFrontEnd(Engine& engine, std::string startup_dir, std::string control_socket)
      : engine_(engine), startup_dir_(std::move(startup_dir)), control_socket_(std::move(control_socket)) {}

  std::string front_end_name() const override { return "nbdkit-filter"; }
  std::string export_uri(const std::string& export_name) const override;
  unsigned client_count(const std::string& export_name) const override;
  Status attach_origin(const std::string& name, const std::string& path, bool read_only) override;
  // Refused (busy) while clients have the origin open, unless force: then their writes fail from now on.
  Status detach_origin(const std::string& name, bool force) override;

  // Finds the origin `name`, attaching it (size from the plugin) when this is its first connection, and
  // registers `client`. `detached` is set when the origin is force-detached under this client.
  Status open_origin(const void* client, const std::string& name, uint64_t size, bool read_only,
                     std::atomic<bool>* detached, std::shared_ptr<Origin>& out);
  // Registers a connection to an image export.
  void open_image(const void* client, const std::string& export_name, const std::string& origin,
                  std::atomic<bool>* detached);
  void close_client(const void* client);

 private:
  struct Client {
    std::string export_name;
    std::string origin;
    std::atomic<bool>* detached = nullptr;
  };
  // The listening Unix socket of this nbdkit (not the control socket), or empty. IPv4 TCP is the fallback.
  std::string find_nbd_socket() const;

  Engine& engine_;
  const std::string startup_dir_;
  const std::string control_socket_;
  mutable std::mutex mutex_;  // also serialises attach and detach against new connections
  std::map<const void*, Client> clients_;  // GUARDED_BY(mutex_)
  mutable std::string nbd_socket_;         // GUARDED_BY(mutex_) cache of find_nbd_socket()
  mutable std::string tcp_listener_;       // GUARDED_BY(mutex_) "HOST:PORT" when nbdkit listens on TCP only
};

}  // namespace nbdsnap
