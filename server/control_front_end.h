// SPDX-License-Identifier: BSD-3-Clause
// control_front_end.h — nbdsnapd's answers to the control protocol's front-end questions: export URIs,
// client counts, attaching origins by path and detaching them (disconnecting their clients when forced).
#pragma once

#include "control.h"
#include "origin_files.h"
#include "server.h"

namespace nbdsnap {

class NbdsnapdFrontEnd final : public ControlFrontEnd {
 public:
  NbdsnapdFrontEnd(Engine& engine, Server& server, OriginFiles& files)
      : engine_(engine), server_(server), files_(files) {}
  std::string front_end_name() const override { return "nbdsnapd"; }
  std::string export_uri(const std::string& export_name) const override {
    return server_.export_uri(export_name);
  }
  unsigned client_count(const std::string& export_name) const override {
    return server_.clients().count(export_name);
  }
  Status attach_origin(const std::string& name, const std::string& path, bool read_only,
                       OriginInfo& attached) override;
  Status detach_origin(const std::string& name, bool force) override;

 private:
  // detach_origin's, for an origin the engine has attached: clients, the engine's detach, the list.
  Status detach_attached(const std::string& name, bool force);

  Engine& engine_;
  Server& server_;
  OriginFiles& files_;
};

}  // namespace nbdsnap
