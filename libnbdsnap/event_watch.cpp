// SPDX-License-Identifier: BSD-3-Clause
// event_watch.cpp — Client::watch_events(): the callback form of the event log, built on events-wait in short
// waits so that a stop request or the overall timeout is seen between them (nbdsnap/client.h).
#include <algorithm>
#include <cerrno>

#include "client_impl.h"

namespace nbdsnap::client {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kShortestPoll{10};
constexpr milliseconds kLongestPoll{60000};

}  // namespace

bool EventFilter::matches(const Event& event) const {
  if (!types.empty() && std::find(types.begin(), types.end(), event.type) == types.end()) return false;
  if (!snapshot.empty() && event.snapshot != snapshot) return false;
  return origin.empty() || event.origin == origin;
}

Result<WatchEnd> Client::watch_events(const EventFilter& filter, const EventCallback& callback,
                                      const std::stop_token& stop, const WatchOptions& options) {
  if (!callback) return client_failure(kInvalidRequest, EINVAL, "watch_events needs a callback");
  WatchEnd end;
  end.position = options.after;
  const milliseconds poll = std::clamp(options.poll, kShortestPoll, kLongestPoll);
  const Clock::time_point deadline = Clock::now() + std::max(options.timeout, milliseconds(0));
  for (;;) {
    if (stop.stop_requested()) {
      end.reason = WatchEnd::Reason::stop_requested;
      return end;
    }
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    if (left <= milliseconds(0)) {
      end.reason = WatchEnd::Reason::timed_out;
      return end;
    }
    // wait_events() takes the Client's lock and releases it before the callbacks below run.
    Result<EventBatch> batch = wait_events(end.position, std::min(poll, left));
    if (!batch) return batch.error();
    for (const Event& event : batch->events) {
      // Each event once, in sequence order: one at or below the position reached was delivered already (or
      // passed over); a server that replayed old events would otherwise have them called back for ever.
      if (event.sequence <= end.position) continue;
      end.position = event.sequence;
      if (!filter.matches(event)) continue;
      ++end.delivered;
      if (callback(event) == WatchVerdict::stop) {
        end.reason = WatchEnd::Reason::callback_stopped;
        return end;
      }
    }
  }
}

}  // namespace nbdsnap::client
