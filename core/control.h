// SPDX-License-Identifier: BSD-3-Clause
// control.h — the control command set every front end serves: one JSON request in, one JSON reply out.
//
// The protocol (docs/control.md): a request is {"command": "...", ...arguments}; a reply is
// {"ok": true, ...result} or {"ok": false, "error": {"code": "not_found", "errno": 2, "message": "..."}}.
// A failed command changes nothing. Front-end specific facts (export URIs, attaching by path, client
// counts) come from the ControlFrontEnd the front end implements.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "control_roles.h"
#include "engine.h"

namespace nbdsnap {

inline constexpr int kControlProtocolVersion = 1;

class ControlFrontEnd {
 public:
  virtual ~ControlFrontEnd() = default;
  // "nbdsnapd" or "nbdkit-filter".
  virtual std::string front_end_name() const = 0;
  // An NBD URI a client uses to open an export ("nbd+unix:///NAME?socket=..."), empty if unknown.
  virtual std::string export_uri(const std::string& export_name) const = 0;
  // Number of clients connected to an export (origin or image).
  virtual unsigned client_count(const std::string& export_name) const { return 0; }
  // `origin attach NAME PATH`: opens the device and attaches it (not_supported by default); `attached`
  // receives the origin as the engine attached it (Engine::attach_origin), for the reply.
  virtual Status attach_origin(const std::string& name, const std::string& path, bool read_only,
                               OriginInfo& attached) {
    return {Errc::not_supported, "this front end cannot attach origins by path"};
  }
  // `origin detach NAME`: disconnects clients if forced, then detaches.
  virtual Status detach_origin(const std::string& name, bool force) {
    return {Errc::not_supported, "this front end cannot detach origins"};
  }
};

class Control {
 public:
  Control(Engine& engine, ControlFrontEnd& front_end) : engine_(engine), front_end_(front_end) {}
  // Handles one request. Never throws.
  nlohmann::json handle(const nlohmann::json& request);
  // Parses one line of text, handles it, and returns the reply as one line (no newline).
  std::string handle_line(const std::string& line);
  // As handle_line() for a caller with a role (a remote control client): a command needing more than the
  // caller's role is refused with permission_denied naming the role it needs (control_roles.h).
  std::string handle_line(const std::string& line, const ControlCaller& caller);

 private:
  Engine& engine_;
  ControlFrontEnd& front_end_;
};

// The reply object for a failed Status.
nlohmann::json error_reply(const Status& status);

}  // namespace nbdsnap
