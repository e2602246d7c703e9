// SPDX-License-Identifier: BSD-3-Clause
// chain_backup.h — `nbdsnap backup --format qcow2 --to DIR`: each backup is a new restore point in the chain
// directory, a full one a qcow2 file of its own, an incremental one a qcow2 overlay of the newest point that
// holds only the changed ranges. The file is created by qemu-img and written through qemu-nbd, so QEMU's
// qcow2 code is the only one that ever writes it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "backup_job.h"
#include "byte_ranges.h"
#include "chain_directory.h"

namespace nbdsnap::cli {

class MachineProgress;
class NbdImage;

// The plan's view of the chain (backup_plan.h): its newest complete point is the previous backup. A chain
// holds one origin's points: another origin's backup is a usage error.
void describe_chain_target(const ChainDirectory& chain, BackupFacts& facts);

// The record of the newest complete point of the chain in `directory`, read without the chain's lock (only
// to tell a checkpoint the server lost from a typo before the chain is opened and locked; the plan reads
// the point again under the lock). nullopt when there is no chain or no complete point there, or its
// manifest cannot be read (the locked read then says why).
std::optional<BackupRecord> newest_chain_record_unlocked(const std::string& directory);

// Writes the next point of the chain from `ranges` of the image: recorded as "writing" in the manifest
// before its file exists, "complete" with its checksum once qemu-nbd has flushed it. On failure the file
// and its entry are removed again (a crash leaves a "writing" point the next backup discards). Fills the
// report's point, bytes and time. Throws CliError.
void write_chain_point(ChainDirectory& chain, const BackupJob& job, const BackupFacts& facts, NbdImage& image,
                       const std::vector<ByteRange>& ranges, BackupReport& report, MachineProgress* machine);

}  // namespace nbdsnap::cli
