// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap/client.h — libnbdsnap: a C++ client of the nbdsnap control protocol (docs/control.md), for backup
// agents. One Client is one connection to nbdsnapd or to nbdkit with the nbdsnap filter.
//
// Lifecycle (docs/libnbdsnap.md has the diagram): connect() returns a Client in state `connected`. A call
// that cannot know where the conversation stands (the connection broke, a reply did not come in time, a
// reply was not the protocol's) leaves it `dead`: the server may still answer later, so the connection is
// not reused and every later call fails with kNotConnected. close() makes it `closed`. A server's refusal
// ({"ok": false}) leaves the Client connected.
//
// Every call of the server is valid only while `connected` and fails otherwise with kNotConnected; besides
// its own errors, each may fail with the transport's (kTimeout, kConnectionLost, kWrongSocket) and with
// kProtocolError, after which the Client is dead. The errors each command can get from the server are listed
// in docs/libnbdsnap.md.
//
// Replies are checked before a call reads them: a field present with another type than docs/control.md
// gives it, or missing where the reply means nothing without it (the list of a list command, the offset and
// length of a CBT range), is kProtocolError ("server's reply to cbt-map: 'ranges[3].length' is missing;
// ..."), never read as empty or 0 (a changed range an incremental backup would skip). Fields a newer server
// adds, and the replies of commands this version does not know (through call()), pass unchecked.
//
// Thread-safety: a Client may be used from several threads at once. The protocol answers requests in order
// on one connection, so calls are serialised: a call waits while another thread's call is in flight,
// including wait_events() for the time it waits on the server. Follow events on a Client of their own.
// Moving or destroying a Client while another thread uses it is not allowed.
//
// Time: Options::timeout bounds connecting and each call's wait for its reply, on top of what the command
// itself waits on the server (wait_events' wait). Nothing in the library waits without a bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "nbdsnap/result.h"
#include "nbdsnap/transport.h"
#include "nbdsnap/types.h"

namespace nbdsnap::client {

// The library's version, "MAJOR.MINOR.PATCH" (the soname is libnbdsnap.so.MAJOR-ish: see docs/libnbdsnap.md).
const char* library_version();

// Ranges per cbt-mark-dirty request when cbt_mark_dirty() splits a long list: about 40 bytes each in JSON, so
// a request stays far below the control protocol's 1 MiB line (docs/control.md).
inline constexpr size_t kMarkDirtyRangesPerRequest = 16384;

struct Options {
  // Bounds connecting and each call's wait for its reply (beyond what the command waits on the server).
  std::chrono::milliseconds timeout{30000};
  // How messages about a timeout name the setting, e.g. "--timeout" gives "within 30 s (--timeout)".
  std::string timeout_name;
  // The credentials connect() uses for a tls:// address (see tls_transport() in transport.h).
  TlsFiles tls;
};

enum class State { connected, dead, closed };

// Which events Client::watch_events() passes to its callback. Each field left empty matches any event.
struct EventFilter {
  std::vector<std::string> types;  // e.g. {"low_free_space", "corrupted"} (types.h lists them)
  std::string snapshot;
  std::string origin;
  bool matches(const Event& event) const;
};

// What a watch_events() callback answers: go on, or end the watch after this event.
enum class WatchVerdict { keep_watching, stop };
using EventCallback = std::function<WatchVerdict(const Event&)>;

struct WatchOptions {
  // Events with sequence > after (0: from the oldest the server still holds).
  uint64_t after = 0;
  // How long the whole watch may last (every wait in the library is bounded); the watch then ends timed_out.
  std::chrono::milliseconds timeout{std::chrono::hours(24)};
  // Each events-wait's wait on the server (10 ms .. 60 s): how late a stop request may be noticed, and how
  // long another thread's call on the same Client may wait behind the watch.
  std::chrono::milliseconds poll{500};
};

struct WatchEnd {
  enum class Reason { callback_stopped, stop_requested, timed_out };
  Reason reason = Reason::timed_out;
  uint64_t position = 0;   // the sequence of the last event read (passed on or filtered out): resume after it
  uint64_t delivered = 0;  // events passed to the callback
};

class Client {
 public:
  // Connects to the control socket at `address` (nbdsnapd --control PATH, nbdkit nbdsnap-control=PATH)
  // within options.timeout. Errors: kConnectionFailed (errno: ENOENT no such socket, ECONNREFUSED no server,
  // ENAMETOOLONG a path that is empty or too long), kTimeout (the server's listen backlog stayed full).
  // An address "tls://[USER@]HOST:PORT" is nbdsnapd's remote control listener, reached with options.tls
  // through tls_transport() (its errors too).
  static Result<Client> connect(const std::string& address, const Options& options = {});
  // Connects through another transport (e.g. TLS). Errors: those of transport->connect().
  static Result<Client> connect(std::unique_ptr<Transport> transport, const Options& options = {});

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();  // close()

  State state() const;
  // Ends the connection (any state; idempotent). Waits for a call in flight on another thread to end.
  void close();
  // The endpoint in messages: "control socket PATH".
  std::string endpoint() const;

  // --- any command -----------------------------------------------------------------------------------------
  // Sends `request_json` (one JSON object with a "command" member, no newline) and returns the reply line
  // ({"ok": true, ...}) as text. For commands newer than this library, or to see every field of a reply.
  // `server_wait` is what the command may wait on the server (events-wait's timeout_ms). Errors: the
  // server's, kInvalidRequest (not a JSON object, or a newline in it), kProtocolError (a reply of the wrong
  // shape, see above).
  Result<std::string> call(const std::string& request_json,
                           std::chrono::milliseconds server_wait = std::chrono::milliseconds(0));
  // As call() for the paged commands (cbt-map, cbt-raw-map): asks for page after page while the reply says
  // `more`, and returns one reply holding every page's `ranges` (or `runs`), the last page's `next_offset`,
  // `more` false (cbt-raw-map: `length` covering all pages). Errors: call()'s; kInvalidRequest (another
  // command), kGenerationChanged (the CBT generation changed between pages: read it again; a backup must be
  // full), kProtocolError (a page that says more follows but does not move on).
  Result<std::string> call_all_pages(const std::string& request_json);

  // --- server and origins ----------------------------------------------------------------------------------
  Result<ServerVersion> version();
  Result<std::vector<Origin>> origins();
  Result<Origin> origin_info(const std::string& name);
  // nbdsnapd only (the filter answers not_supported). `path` as the server sees it: give an absolute path.
  Result<Origin> origin_attach(const std::string& name, const std::string& path, bool read_only = false);
  Result<void> origin_detach(const std::string& name, bool force = false);

  // --- change block tracking -------------------------------------------------------------------------------
  Result<CbtInfo> cbt_info(const std::string& origin, const std::string& snapshot = {});
  // One page of the changed ranges (query.since: after that checkpoint). A page that breaks the paging rules
  // (docs/control.md: ranges sorted, disjoint, not empty, within the device and the bytes asked for and
  // before next_offset) fails with kProtocolError; the connection stays up.
  Result<CbtMap> cbt_map(const CbtQuery& query);
  // All pages of the changed ranges from query.offset on, joined into one CbtMap (more == false). A change
  // of generation between pages fails with kGenerationChanged: CBT history was lost, do a full backup.
  // Errors: cbt_map()'s for each page; kProtocolError for a page that does not move on or whose block_size
  // or device_size differs from the first's.
  Result<CbtMap> cbt_changed_ranges(const CbtQuery& query);
  // One page of change numbers per tracking block (servers with cbt-raw-map only). A page whose runs do not
  // cover exactly the whole blocks from its offset (the block holding query.offset) to next_offset, or with
  // a run of no block, fails with kProtocolError; the connection stays up.
  Result<CbtRawMap> cbt_raw_map(const CbtQuery& query);
  // All pages of the raw map from query.offset on, joined (more == false; length covers them all). Errors:
  // cbt_raw_map()'s, kGenerationChanged and kProtocolError as cbt_changed_ranges().
  Result<CbtRawMap> cbt_whole_raw_map(const CbtQuery& query);
  // Marks ranges changed (for writes the tracker did not see). A long list is sent in requests of at most
  // kMarkDirtyRangesPerRequest ranges; an error stops at the failed request, the ones before it having been
  // marked (harmless: marking only adds to what the next backup copies).
  Result<void> cbt_mark_dirty(const std::string& origin, const std::vector<ByteRange>& ranges);
  // Starts a new generation; returns it.
  Result<std::string> cbt_reset(const std::string& origin);
  Result<CheckpointList> checkpoints(const std::string& origin, const std::string& snapshot = {});
  // Servers with checkpoint-delete only.
  Result<void> checkpoint_delete(const std::string& origin, const std::string& name);

  // --- snapshots and their difference storage --------------------------------------------------------------
  Result<Snapshot> snapshot_create(const SnapshotSpec& spec);
  Result<void> snapshot_add(const std::string& name, const std::string& origin);
  Result<void> snapshot_remove(const std::string& name, const std::string& origin);
  Result<Snapshot> snapshot_take(const std::string& name);
  Result<Snapshot> snapshot_append_storage(const std::string& name, const StorageArea& storage);
  // As above, with the files created at a size made `allocation` (sparse only where a size is given).
  Result<Snapshot> snapshot_create(const SnapshotSpec& spec, StorageAllocation allocation);
  Result<Snapshot> snapshot_append_storage(const std::string& name, const StorageArea& storage,
                                           StorageAllocation allocation);
  Result<Snapshot> snapshot_info(const std::string& name);
  Result<std::vector<Snapshot>> snapshots();
  Result<void> snapshot_destroy(const std::string& name);
  // As above; force destroys it even while clients read its images (their requests fail from then on).
  // Without force the server refuses with Errc busy, naming the number of image clients.
  Result<void> snapshot_destroy(const std::string& name, bool force);

  // --- metrics ---------------------------------------------------------------------------------------------
  // Every origin's and image's counters and every snapshot's storage space (servers with `stats` only; older
  // ones answer invalid_argument "unknown command").
  Result<Stats> stats();

  // --- events ----------------------------------------------------------------------------------------------
  // The events with sequence > after, waiting up to `wait` (at most 24 h) for the first one. A server that
  // stops or restarts meanwhile ends the wait early with no event and closes the connection: that is
  // kConnectionLost, whose message says to resume with `after` on a new connection, not an empty batch (the
  // same for call() with an events-wait request).
  Result<EventBatch> wait_events(uint64_t after,
                                 std::chrono::milliseconds wait = std::chrono::milliseconds(0));
  // Calls `callback` with each event that matches `filter` as the server logs it, until the callback answers
  // WatchVerdict::stop, `stop` is requested or options.timeout passes (WatchEnd says which).
  // Threading: the callback runs on the calling thread, one event at a time, in sequence order. No lock of
  // the library is held while it runs, so it may call this Client (e.g. snapshot_append_storage() on
  // low_free_space); it must not close(), move or destroy it. An exception it throws propagates out of
  // watch_events() (the one thing the library lets through); the Client stays connected (no call in flight).
  // Stopping from another thread: request_stop() on the std::stop_source; it is seen within options.poll (a
  // wait in flight on the server is not cut short: cutting it would leave the connection dead).
  // Errors: wait_events()'s (the watch ends; the last event the callback saw tells where to resume),
  // kInvalidRequest (no callback).
  Result<WatchEnd> watch_events(const EventFilter& filter, const EventCallback& callback,
                                const std::stop_token& stop = {}, const WatchOptions& options = {});

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A blocking iterator over the event log: next() returns the events one by one, asking the server for more
// (events-wait) when it has none buffered. Each event once, in increasing sequence (an event a server sends
// again, or out of order, at or below the last one returned is dropped; watch_events() does the same). Uses
// the Client it is given; not thread-safe itself.
class EventStream {
 public:
  // Events with sequence > after (0: from the oldest the server still holds).
  explicit EventStream(Client& client, uint64_t after = 0) : client_(&client), after_(after) {}
  // The next event, waiting up to `wait` for one; std::nullopt when none came. Errors: wait_events()'s.
  Result<std::optional<Event>> next(std::chrono::milliseconds wait);
  // The sequence of the last event returned (or `after`).
  uint64_t position() const { return after_; }

 private:
  Client* client_;
  uint64_t after_;
  std::vector<Event> buffered_;
  size_t next_buffered_ = 0;
};

}  // namespace nbdsnap::client
