// SPDX-License-Identifier: BSD-3-Clause
// filter_front_end.h — what the control protocol needs to know about the nbdkit side: clients, URIs, and
// which exports are origins.
//
// Keeps the registry of open connections (which export, which origin), so `origins` can report client counts
// and `origin-detach` can refuse or cut off the writers of an origin before the engine forgets it. Decides,
// with the plugin's own export list (plugin_exports.h), which export names may be opened at all, and makes
// every listed export an origin once, so CBT state is there before any client opened it.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "control.h"
#include "engine.h"
#include "mutex.h"
#include "opened_files.h"
#include "plugin_exports.h"
#include "self_client.h"

namespace nbdsnap {

// When the filter may connect to nbdkit's own socket. nbdkit holds a lock through every handshake when it
// serializes all requests, and through whole connections when it serializes connections: a connection of the
// filter's own, made while nbdkit holds that lock for the caller, would wait for it until its deadline.
enum class SelfConnection {
  always,              // thread models parallel and serialize_requests
  outside_handshakes,  // serialize_all_requests: from control requests, not from .open
  never,               // serialize_connections: the list is only what clients' NBD_OPT_LIST showed
};
SelfConnection self_connection_for_thread_model(int thread_model);

class FilterFrontEnd final : public ControlFrontEnd {
 public:
  // startup_dir resolves a relative nbdkit socket path; control_socket is skipped when looking for it.
  FilterFrontEnd(Engine& engine, PluginExports& exports, std::string startup_dir, std::string control_socket,
                 SelfConnection self_connection)
      : engine_(engine),
        exports_(exports),
        startup_dir_(std::move(startup_dir)),
        control_socket_(std::move(control_socket)),
        self_connection_(self_connection) {}

  std::string front_end_name() const override { return "nbdkit-filter"; }
  std::string export_uri(const std::string& export_name) const override;
  unsigned client_count(const std::string& export_name) const override;
  Status attach_origin(const std::string& name, const std::string& path, bool read_only,
                       OriginInfo& attached) override;
  // Refused (busy) while clients have the origin open, unless force: then their writes fail from now on.
  Status detach_origin(const std::string& name, bool force) override;

  // Where this nbdkit listens for NBD clients, found once in /proc; empty when the filter cannot tell.
  NbdListener nbd_listener() const;
  // The plugin export a client's export name opens, if the plugin lists it: `requested` "" is the plugin's
  // default export, otherwise `origin`'s export (the origin part of the name, PluginExports::export_of). A
  // name not in the recorded list makes the filter ask nbdkit for the list again first, unless
  // by_own_connection (the open comes from the filter's own connection to nbdkit, self_client.h: it must not
  // make another). Refused with not_found and a message naming the export and the list. Called on nbdkit's
  // connection threads (.open).
  Status plugin_export_for(const std::string& requested, const std::string& origin, bool by_own_connection,
                           std::string& plugin_export);
  // Called before each control request: asks nbdkit for the plugin's list, then opens once (NBD_OPT_INFO on
  // nbdkit's own socket, which attaches it in .prepare) every listed export that has not been an origin
  // during this run. Exports attached before and detached since are left to their next client. Returns what
  // failed, for the log. Serialised; bounded by kSelfClientTimeout per step.
  std::vector<std::string> attach_listed_origins();

  // Finds the origin `name`, attaching it (size and minimum block size from the plugin; 0: none;
  // file_identity: the file the plugin opened when known, opened_files.h; file_path: its path) when this is
  // its first connection, and registers `client`. A file attached is locked until the origin is detached
  // (OriginFileLock), as nbdsnapd locks its origins. Once the origin is detached, every request of `client`
  // fails (the origin's gates). Errors: those of Engine::attach_origin (already_exists: the file is another
  // origin or difference storage), of OriginFileLock::acquire (busy: another process, an nbdsnapd or another
  // nbdkit, holds the file), bad_state (the export's size changed, or it is now another file than the one the
  // origin was attached with: renamed or replaced in dir=), busy (the origin is being detached, or another
  // connection's attach of it has not ended within kAttachWaitLimit, which this call waits at most).
  Status open_origin(const void* client, const std::string& name, uint64_t size, uint64_t minimum_io_size,
                     bool read_only, const std::string& file_identity, const std::string& file_path,
                     std::shared_ptr<Origin>& out);
  // Registers a connection to an image export, whose unchanged chunks it reads through the plugin's export of
  // `origin`. Errors: bad_state when file_identity (as for open_origin) is not the file the origin was
  // attached with.
  Status open_image(const void* client, const std::string& export_name, const std::string& origin,
                    const std::string& file_identity);
  void close_client(const void* client);

 private:
  struct Client {
    std::string export_name;
    std::string origin;
  };
  // busy: origin `name` is being detached (detaching_).
  static Status being_detached(const std::string& name);
  // busy: origin `name` has been being attached by another connection for kAttachWaitLimit (attaching_).
  static Status being_attached(const std::string& name);
  // Locks the origin's file and attaches it in the engine, registered in attaching_ and without mutex_
  // meanwhile (held again on return); keeps the file's lock in origin_locks_ once attached.
  Status attach_locked(const std::string& name, uint64_t size, uint64_t minimum_io_size, bool read_only,
                       const std::string& file_identity, const std::string& file_path) REQUIRES(mutex_);
  // The URI of `export_name` at nbd_listener(), or empty when the filter found no listener.
  std::string export_uri_of_listener(const std::string& export_name) const;
  // The listening Unix socket of this nbdkit (not the control socket), or empty. IPv4 TCP is the fallback.
  std::string find_nbd_socket() const;
  // A connection to nbdkit's own socket, or why there is none. in_handshake: the caller is inside one of
  // nbdkit's handshakes (.open).
  Status connect_to_self(bool in_handshake, std::unique_ptr<SelfClient>& out) const;

  // Every step of a connection to nbdkit's own socket (connect, NBD_OPT_LIST, each NBD_OPT_INFO) ends by
  // then.
  static constexpr std::chrono::milliseconds kSelfClientTimeout{5000};
  // How long an open waits for another connection's attach of the same origin before it gives up (busy).
  static constexpr std::chrono::milliseconds kAttachWaitLimit{10000};

  Engine& engine_;
  PluginExports& exports_;
  const std::string startup_dir_;
  const std::string control_socket_;
  const SelfConnection self_connection_;
  // Locks of the filter, in precedence order: discovery_mutex_, then mutex_ (held while it calls the engine,
  // whose locks come next, core/lock_order.h), then PluginExports' refresh_mutex_ and mutex_. A leaf:
  // PluginOpenTurn::mutex_ (opened_files.h; the turn it guards is a wait, bounded, held by no lock).
  Mutex discovery_mutex_;  // one attach_listed_origins at a time
  // Held by an attach and a detach only to check and to mark (attaching_, detaching_): the engine's attach
  // waits for CBT state I/O and its detach for I/O in flight, which a stalled disk holds up, and opens of
  // other origins must not wait behind them.
  mutable Mutex mutex_ ACQUIRED_AFTER(discovery_mutex_);
  std::map<const void*, Client> clients_ GUARDED_BY(mutex_);
  std::set<std::string> attach_tried_ GUARDED_BY(mutex_);  // origins attached or offered during this run
  mutable std::string nbd_socket_ GUARDED_BY(mutex_);      // cache of find_nbd_socket()
  mutable std::string tcp_listener_ GUARDED_BY(mutex_);    // "HOST:PORT" when nbdkit listens on TCP only
  // The files of attached origins, locked from attach until detach (open_origin, detach_origin).
  std::map<std::string, OriginFileLock> origin_locks_ GUARDED_BY(mutex_);
  // Origins whose detach waits, without mutex_, for their I/O in flight: new clients of them are refused.
  std::set<std::string> detaching_ GUARDED_BY(mutex_);
  // Origins an open attaches without mutex_ (attach_locked): other opens of them wait on attached_ (bounded),
  // detaches of them are busy.
  std::set<std::string> attaching_ GUARDED_BY(mutex_);
  CondVar attached_;  // an attach_locked ended
};

}  // namespace nbdsnap
