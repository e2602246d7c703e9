// SPDX-License-Identifier: BSD-3-Clause
// filter_front_end.cpp — client registry, which exports are origins, origin attach, detach, and export URIs.
#include "filter_front_end.h"

#include <dirent.h>
#include <nbdkit-filter.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "export_name.h"

namespace nbdsnap {
namespace {

// Inodes of the sockets this process holds (from /proc/self/fd links "socket:[INODE]").
std::set<unsigned long> own_socket_inodes() {
  std::set<unsigned long> inodes;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return inodes;
  while (dirent* entry = readdir(dir)) {
    char target[64];
    std::string link = std::string("/proc/self/fd/") + entry->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    unsigned long inode = 0;
    if (std::sscanf(target, "socket:[%lu]", &inode) == 1) inodes.insert(inode);
  }
  closedir(dir);
  return inodes;
}

// "HOST:PORT" of a listening IPv4 TCP socket this process holds, from /proc/net/tcp, or empty.
std::string find_tcp_listener(const std::set<unsigned long>& inodes) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    unsigned address = 0, port = 0, state = 0;
    unsigned long inode = 0;
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (std::sscanf(line.c_str(), " %*d: %8X:%4X %*8X:%*4X %2X %*8X:%*8X %*2X:%*8X %*8X %*u %*d %lu",
                    &address, &port, &state, &inode) != 4)
      continue;
    constexpr unsigned kListen = 0x0A;
    if (state != kListen || inodes.count(inode) == 0) continue;
    // The address is in network byte order read as a little-endian number.
    std::string host =
        address == 0 ? "localhost"
                     : std::to_string(address & 0xff) + "." + std::to_string((address >> 8) & 0xff) + "." +
                           std::to_string((address >> 16) & 0xff) + "." + std::to_string(address >> 24);
    return host + ":" + std::to_string(port);
  }
  return {};
}

}  // namespace

std::string FilterFrontEnd::find_nbd_socket() const {
  // /proc/net/unix: "Num RefCount Protocol Flags Type St Inode Path"; flag 0x10000 marks a listening socket.
  // The path is the rest of the line after one space, unescaped: it may hold spaces ("/srv/my disks/s").
  constexpr unsigned long kListening = 0x10000;
  const auto inodes = own_socket_inodes();
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string num, refcount, protocol, flags, type, state, path;
    unsigned long inode = 0;
    if (!(fields >> num >> refcount >> protocol >> flags >> type >> state >> inode)) continue;
    if (fields.get() != ' ' || !std::getline(fields, path) || path.empty()) continue;  // unbound
    if ((std::stoul(flags, nullptr, 16) & kListening) == 0 || inodes.count(inode) == 0 || path[0] == '@')
      continue;
    if (path[0] != '/') path = startup_dir_ + "/" + path;
    if (path != control_socket_) return path;
  }
  return {};
}

NbdListener FilterFrontEnd::nbd_listener() const {
  MutexLock lock(mutex_);
  if (nbd_socket_.empty() && tcp_listener_.empty()) {
    nbd_socket_ = find_nbd_socket();
    if (nbd_socket_.empty()) tcp_listener_ = find_tcp_listener(own_socket_inodes());
  }
  return {nbd_socket_, tcp_listener_};
}

std::string FilterFrontEnd::export_uri(const std::string& export_name) const {
  // Oldstyle nbdkit (-o) serves one export, to clients that send no name: the default origin has a URI
  // without one, and every other export (images above all) has none, since no client can reach it.
  if (exports_.oldstyle()) {
    const std::string served = exports_.oldstyle_export();
    if (export_name != (served.empty() ? exports_.origin_of("") : served)) return {};
    return export_uri_of_listener("");
  }
  return export_uri_of_listener(export_name);
}

std::string FilterFrontEnd::export_uri_of_listener(const std::string& export_name) const {
  const NbdListener where = nbd_listener();
  if (!where.unix_path.empty()) return nbd_unix_uri(export_name, where.unix_path);
  if (!where.tcp_host_port.empty())
    return "nbd://" + where.tcp_host_port + "/" + export_name_uri_path(export_name);
  return {};
}

// An origin is one file for as long as it is attached: an export of its name that now reaches another file
// (renamed or replaced in the plugin's directory) would be written under this origin's tracker, and its
// images would read their unchanged chunks from that file. Unknown files (other plugins) are not compared.
Status same_file_as_attached(const Origin& origin, const std::string& export_name,
                             const std::string& file_identity) {
  if (file_identity.empty() || origin.file_identity().empty() || file_identity == origin.file_identity())
    return Status::ok();
  return {Errc::bad_state, "export '" + export_name + "' is now another file than the one origin '" +
                               origin.name() +
                               "' was attached with (renamed or replaced in the plugin's directory?); put "
                               "that file back, or detach the origin (origin-detach) to attach it again"};
}

SelfConnection self_connection_for_thread_model(int thread_model) {
  if (thread_model <= NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS) return SelfConnection::never;
  if (thread_model == NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS) return SelfConnection::outside_handshakes;
  return SelfConnection::always;
}

Status FilterFrontEnd::connect_to_self(bool in_handshake, std::unique_ptr<SelfClient>& out) const {
  if (self_connection_ == SelfConnection::never)
    return {Errc::not_supported,
            "nbdkit serves one connection at a time (thread model serialize_connections)"};
  if (in_handshake && self_connection_ == SelfConnection::outside_handshakes)
    return {Errc::not_supported,
            "nbdkit serializes all requests, handshakes included (thread model "
            "serialize_all_requests): the list is read before control requests only"};
  if (exports_.oldstyle())
    return {Errc::not_supported, "nbdkit speaks the oldstyle handshake (-o), which lists no exports"};
  const NbdListener where = nbd_listener();
  if (where.empty())
    return {Errc::not_supported, "nbdkit listens on no Unix or IPv4 socket the filter can find"};
  bool oldstyle = false;
  Status connected = SelfClient::connect(where, kSelfClientTimeout, out, &oldstyle);
  // Learnt once: oldstyle nbdkit opened the default export for this connection before its greeting (that
  // open, by the filter's own connection, did not connect again: nbdsnap_open), and it is all it serves.
  if (oldstyle) exports_.record_oldstyle();
  return connected;
}

Status FilterFrontEnd::plugin_export_for(const std::string& requested, const std::string& origin,
                                         bool by_own_connection, std::string& plugin_export) {
  auto export_now = [&] { return requested.empty() ? std::string() : exports_.export_of(origin); };
  plugin_export = export_now();
  // Oldstyle nbdkit opens one name for every client: that one is the export, and nothing is listed.
  if (exports_.oldstyle()) return exports_.accept_oldstyle_open(requested);
  if (exports_.list_known() && exports_.is_listed(plugin_export)) return Status::ok();
  std::unique_ptr<SelfClient> client;
  Status refreshed = by_own_connection
                         ? Status(Errc::not_supported,
                                  "the open comes from the filter's own connection to nbdkit, which never "
                                  "makes another")
                         : connect_to_self(true, client);
  if (refreshed) refreshed = exports_.refresh(*client);
  plugin_export = export_now();  // the default origin's export depends on the list
  if (exports_.is_listed(plugin_export)) return Status::ok();
  if (!exports_.list_known())
    return {Errc::not_found,
            "export '" + plugin_export + "' cannot be checked against the plugin's export list (" +
                refreshed.message() +
                "); until the list can be read (a client's NBD_OPT_LIST, "
                "e.g. nbdinfo --list, also shows it to the filter) only the default export \"\" "
                "is served"};
  return {Errc::not_found, "export '" + plugin_export + "' is not one of the plugin's exports (" +
                               exports_.describe() +
                               "); only those are origins, so that one disk is never tracked "
                               "under two names"};
}

std::vector<std::string> FilterFrontEnd::attach_listed_origins() {
  MutexLock discovery(discovery_mutex_);
  std::vector<std::string> failures;
  std::unique_ptr<SelfClient> client;
  Status s = connect_to_self(false, client);
  if (s) s = exports_.refresh(*client);
  if (!s) {
    // Oldstyle nbdkit lists nothing; the connection that found that out attached its one export (its open).
    if (!exports_.oldstyle()) failures.push_back("reading the plugin's export list: " + s.message());
    return failures;
  }
  for (const std::string& name : exports_.names()) {
    const std::string origin = exports_.origin_of(name);
    if (!check_object_name("origin", origin)) continue;  // never an origin; .open refuses it too
    {
      MutexLock lock(mutex_);
      if (!attach_tried_.insert(origin).second) continue;
    }
    if (engine_.find_origin(origin)) continue;
    client->renew_deadline();
    if (Status opened = client->info(name); !opened) {
      failures.push_back("attaching export '" + name + "': " + opened.message());
      if (opened.code() == Errc::io_error) break;  // the connection is unusable now
    }
  }
  return failures;
}

unsigned FilterFrontEnd::client_count(const std::string& export_name) const {
  MutexLock lock(mutex_);
  unsigned count = 0;
  for (const auto& [handle, client] : clients_) count += client.export_name == export_name;
  return count;
}

Status FilterFrontEnd::attach_origin(const std::string& name, const std::string&, bool, OriginInfo&) {
  return {Errc::not_supported, "the nbdkit filter attaches origin '" + name +
                                   "' when a client first opens the plugin's export of that name"};
}

Status FilterFrontEnd::detach_origin(const std::string& name, bool force) {
  {
    MutexLock lock(mutex_);
    if (detaching_.count(name)) return being_detached(name);
    if (attaching_.count(name)) return being_attached(name);
    unsigned writers = 0;
    for (const auto& [handle, client] : clients_) writers += client.export_name == name;
    if (writers > 0 && !force)
      return {Errc::busy, "origin '" + name + "' has " + std::to_string(writers) +
                              " client(s) connected; disconnect them or use force"};
    detaching_.insert(name);  // no new client of it from here (open_origin)
  }
  // Without mutex_: the engine closes the origin's gates and waits for the requests inside, as long as a
  // stalled disk holds them; the connections that still hold it get EIO on every request from then on, so no
  // write reaches the plugin untracked after the CBT was saved. Other origins' clients connect meanwhile.
  bool done = false;
  Status detached = engine_.detach_origin(name, force, &done);
  // Closed after mutex_ is released: a close waits for the file's file system (FUSE flushes, NFS writes
  // back and unlocks), and every open and close of a connection needs mutex_.
  decltype(origin_locks_)::node_type released;
  {
    MutexLock lock(mutex_);
    detaching_.erase(name);
    // Detached (its CBT saved or not): the file is free for others, as nbdsnapd's after origin-detach.
    if (done || !engine_.find_origin(name)) released = origin_locks_.extract(name);
  }
  // Detached although its CBT state could not be saved: the reply says both, or an agent would take the
  // origin for still attached (and tracked) and retry the detach.
  if (done && !detached.is_ok()) {
    return {detached.code(),
            "origin '" + name + "' is detached, but " + Engine::cbt_not_saved_on_detach(detached)};
  }
  return detached;
}

Status FilterFrontEnd::being_detached(const std::string& name) {
  return {Errc::busy, "origin '" + name +
                          "' is being detached: it waits for I/O in flight (the plugin's disk may not be "
                          "answering); connect again once origin-detach has returned"};
}

Status FilterFrontEnd::being_attached(const std::string& name) {
  return {Errc::busy, "origin '" + name + "' is being attached by another connection, for longer than " +
                          std::to_string(kAttachWaitLimit.count() / 1000) +
                          " s (the CBT state directory may not be answering); connect again later"};
}

Status FilterFrontEnd::attach_locked(const std::string& name, uint64_t size, uint64_t minimum_io_size,
                                     bool read_only, const std::string& file_identity,
                                     const std::string& file_path) {
  attaching_.insert(name);  // later opens of it wait, a detach of it is busy
  // Without mutex_: locking the file and the engine's CBT state I/O wait as long as their file systems
  // stall, and the opens of other exports must not wait behind them.
  mutex_.unlock();
  OriginFileLock file_lock;
  Status status = Status::ok();
  try {
    // Locked before it is tracked: a file another process serves (and tracks) is never attached here. A
    // file this process holds is another origin or difference storage: the engine refuses it below, with
    // the message that names which.
    Status locked = Status::ok();
    if (!file_identity.empty() && !file_path.empty()) {
      locked = OriginFileLock::acquire(file_path, file_identity, read_only, file_lock);
    }
    if (!locked && locked.code() != Errc::already_exists) {
      status = locked;
    } else if (status = engine_.attach_origin(name, nullptr, read_only, size, minimum_io_size, file_identity,
                                              nullptr, file_path);
               status && !locked) {
      (void)engine_.detach_origin(name, true);  // never reached while the engine knows every file we hold
      status = locked;
    }
  } catch (...) {
    file_lock = OriginFileLock();  // closed before mutex_ is taken again, as below
    mutex_.lock();
    attaching_.erase(name);
    attached_.notify_all();
    throw;
  }
  // A lock not kept is closed before mutex_ is taken again: a close waits for the file's file system.
  if (!status) file_lock = OriginFileLock();
  mutex_.lock();
  attaching_.erase(name);
  attached_.notify_all();
  if (status) origin_locks_[name] = std::move(file_lock);
  return status;
}

Status FilterFrontEnd::open_origin(const void* client, const std::string& name, uint64_t size,
                                   uint64_t minimum_io_size, bool read_only, const std::string& file_identity,
                                   const std::string& file_path, std::shared_ptr<Origin>& out) {
  MutexLock lock(mutex_);
  // Another connection attaching this origin (its first clients often connect together: multi-conn) is
  // waited for, within a bound: the attach saves CBT state, which a stalled state directory holds up.
  const auto deadline = std::chrono::steady_clock::now() + kAttachWaitLimit;
  while (attaching_.count(name)) {
    if (!attached_.wait_until(mutex_, deadline) && attaching_.count(name)) return being_attached(name);
  }
  if (detaching_.count(name)) return being_detached(name);
  out = engine_.find_origin(name);
  if (!out) {
    if (Status s = attach_locked(name, size, minimum_io_size, read_only, file_identity, file_path); !s)
      return s;
    out = engine_.find_origin(name);
    if (!out) return {Errc::not_found, "origin '" + name + "' vanished right after attaching"};
  }
  if (Status s = same_file_as_attached(*out, name, file_identity); !s) return s;
  if (out->size() != size)
    return {Errc::bad_state, "export '" + name + "' is now " + std::to_string(size) + " bytes but origin '" +
                                 name + "' was attached with " + std::to_string(out->size()) +
                                 " bytes; detach the origin (origin-detach) to attach it again"};
  clients_[client] = Client{name, name};
  attach_tried_.insert(name);
  return Status::ok();
}

Status FilterFrontEnd::open_image(const void* client, const std::string& export_name,
                                  const std::string& origin, const std::string& file_identity) {
  MutexLock lock(mutex_);
  if (const std::shared_ptr<Origin> attached = engine_.find_origin(origin)) {
    if (Status s = same_file_as_attached(*attached, origin, file_identity); !s) return s;
  }
  clients_[client] = Client{export_name, origin};
  return Status::ok();
}

void FilterFrontEnd::close_client(const void* client) {
  MutexLock lock(mutex_);
  clients_.erase(client);
}

}  // namespace nbdsnap
