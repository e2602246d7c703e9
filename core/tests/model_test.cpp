// SPDX-License-Identifier: BSD-3-Clause
// model_test.cpp — the randomized model test: random origin I/O from several threads, takes, image reads and
// writes, destroys and detaches, with injected faults, checked against a reference copy of every origin kept
// in memory and against the five invariants of ARCHITECTURE.md.
//
// Design notes. Every origin has a reference copy, updated when an origin operation completes. An operation
// first claims its byte range (no two in-flight operations overlap, but many share a chunk), so the reference
// of a range is exact whenever nothing holds it. A take copies each origin's reference when it starts. Two
// kinds of take:
//  - quiesced: the writers pause at a gate before the take, so the image must equal the copy exactly;
//  - racing: the writers go on; the take records the operations in flight when it started and those that
//    started before it returned (the candidates). An image byte must then equal the copy, or the value one
//    of the candidates wrote there — never anything else.
// Trims leave the origin with whatever the device reads afterwards; the writer reads it back while it still
// holds the range. Writable snapshots get image writes and reads from one thread of their own.
//
// Faults. Every seed but the first injects faults at a rate chosen per seed: reads of the origin devices
// (copy-on-write and image reads of unchanged chunks), reads and writes of difference storage (through
// EngineConfig::wrap_storage_device) and chunk buffer allocations (set_chunk_allocation_hook) fail at random.
// The model's own bookkeeping reads of the devices never fail. What is checked does not change:
//  1. a successful image read returns take-time bytes (or, racing, a candidate's); an image call may fail
//     only with corrupted, io_error or no_memory once faults are injected, with not_found once its snapshot
//     is being destroyed or its origin was detached;
//  2. no origin write, zero or trim fails, except with io_error from an Origin that a detach closed (and then
//     nothing reaches the device: the final comparison of devices and references shows it);
//  3. the frozen CBT map of every take marks every write completed since the previous take of the same
//     generation (writes racing either take may fall on either side);
//  4. chunk buffers stay within the budget and are all given back once every snapshot is destroyed;
//  5. every call returns: a watchdog ends the program when a thread spends over 10 s in one engine call.
// Detaches: the controller detaches origins (by force when they are in a snapshot, which drops their image)
// and attaches them again over the same device; writers still holding the old Origin are refused.
//
// Seeds: three fixed seeds plus one random seed (printed), or only NBDSNAP_SEED when set. NBDSNAP_MODEL_OPS
// sets the operations per seed, all threads together (default 25,000: 100,000 per run).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <sstream>
#include <thread>

#include "chunk_buffer.h"
#include "engine.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

constexpr uint64_t kDefaultOperations = 25'000;
constexpr std::chrono::seconds kCallLimit{10};

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  return std::strtoull(text, nullptr, 0);
}

// ---------------------------------------------------------------- fault injection

// Fault rates in failures per million calls. Global: the allocation hook is a plain function pointer.
struct FaultRates {
  std::atomic<uint32_t> origin_read{0};
  std::atomic<uint32_t> storage_read{0};
  std::atomic<uint32_t> storage_write{0};
  std::atomic<uint32_t> allocation{0};
  std::atomic<uint64_t> injected{0};
  void clear() { origin_read = storage_read = storage_write = allocation = 0; }
};
FaultRates faults;

// The model's own reads of the devices (to know what an origin holds) must never fail.
thread_local bool bookkeeping = false;
struct Bookkeeping {
  Bookkeeping() { bookkeeping = true; }
  ~Bookkeeping() { bookkeeping = false; }
};

bool inject(const std::atomic<uint32_t>& rate) {
  const uint32_t per_million = rate.load(std::memory_order_relaxed);
  if (per_million == 0 || bookkeeping) return false;
  thread_local std::mt19937 random{std::random_device{}()};
  if (random() % 1'000'000 >= per_million) return false;
  ++faults.injected;
  return true;
}

void allocation_hook(uint64_t) {
  if (inject(faults.allocation)) throw std::bad_alloc();
}

// A device whose reads (and writes, if a rate is given) fail at the injected rates.
class FaultInjectingDevice final : public BlockDevice {
 public:
  FaultInjectingDevice(std::shared_ptr<BlockDevice> inner, const std::atomic<uint32_t>* read_rate,
                       const std::atomic<uint32_t>* write_rate)
      : inner_(std::move(inner)), read_rate_(read_rate), write_rate_(write_rate) {}
  uint64_t size() const override { return inner_->size(); }
  Status pread(void* buf, uint64_t len, uint64_t offset) override {
    if (read_rate_ && inject(*read_rate_)) return {Errc::io_error, "injected read error"};
    return inner_->pread(buf, len, offset);
  }
  Status pwrite(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    if (write_rate_ && inject(*write_rate_)) return {Errc::io_error, "injected write error"};
    return inner_->pwrite(buf, len, offset, fua);
  }
  Status flush() override { return inner_->flush(); }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return inner_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return inner_->zero(offset, len, may_trim, fua);
  }
  Status extents(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return inner_->extents(offset, len, out);
  }
  bool can_trim() const override { return inner_->can_trim(); }
  std::string file_identity() const override { return inner_->file_identity(); }

 private:
  std::shared_ptr<BlockDevice> inner_;
  const std::atomic<uint32_t>* read_rate_;
  const std::atomic<uint32_t>* write_rate_;
};

// ---------------------------------------------------------------- the watchdog of invariant 5

// Each thread of the model says which engine call it is in; a call that lasts over kCallLimit ends the
// program with the call's name (a hang cannot be reported any other way).
class CallWatchdog {
 public:
  static constexpr int kSlots = 16;
  struct Slot {
    std::atomic<int64_t> since_ms{0};
    std::atomic<const char*> what{""};
  };
  class Call {
   public:
    Call(CallWatchdog& dog, int slot, const char* what) : slot_(dog.slots_[slot]) {
      slot_.what = what;
      slot_.since_ms = now_ms();
    }
    ~Call() { slot_.since_ms = 0; }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    Slot& slot_;
  };
  CallWatchdog() {
    thread_ = std::thread([this] {
      std::unique_lock lock(mutex_);
      while (!stop_changed_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; })) check();
    });
  }
  ~CallWatchdog() {
    {
      std::scoped_lock lock(mutex_);
      stop_ = true;
    }
    stop_changed_.notify_all();
    thread_.join();
  }

 private:
  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void check() {
    const int64_t now = now_ms();
    for (int i = 0; i < kSlots; ++i) {
      const int64_t since = slots_[i].since_ms.load();
      if (since == 0 ||
          now - since < std::chrono::duration_cast<std::chrono::milliseconds>(kCallLimit).count())
        continue;
      std::fprintf(stderr, "HANG: model thread %d has been in %s for %lld ms (invariant 5)\n", i,
                   slots_[i].what.load(), static_cast<long long>(now - since));
      std::fflush(stderr);
      std::_Exit(3);
    }
  }
  std::array<Slot, kSlots> slots_;
  std::mutex mutex_;
  std::condition_variable stop_changed_;
  bool stop_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

// ---------------------------------------------------------------- the model

// Failures found by any thread; the test reports the first few with their details.
class Failures {
 public:
  void add(const std::string& message) {
    std::scoped_lock lock(mutex_);
    ++count_;
    if (messages_.size() < 10) messages_.push_back(message);
  }
  size_t count() const {
    std::scoped_lock lock(mutex_);
    return count_;
  }
  std::vector<std::string> messages() const {
    std::scoped_lock lock(mutex_);
    return messages_;
  }

 private:
  mutable std::mutex mutex_;
  size_t count_ = 0;                   // GUARDED_BY(mutex_)
  std::vector<std::string> messages_;  // GUARDED_BY(mutex_)
};

enum class OpKind { write, zero, trim, read };

// One origin operation on a claimed range. data is final once done.
struct OriginOp {
  OpKind kind = OpKind::write;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<uint8_t> data;
  uint32_t version = 0;  // writes: the pattern version of data
  uint64_t claimed = 0;  // model clock when the range was claimed and released, for failure reports
  uint64_t released = 0;
  bool performed = true;  // false: a detach refused it, the device did not change
  bool done = false;      // GUARDED_BY(OriginModel::mutex)
};

// Collects the operations that start while a take is in progress.
struct TakeWindow {
  std::vector<std::shared_ptr<OriginOp>> ops;
};

// A completed origin write (or zero, or trim), for the CBT check.
struct CbtWrite {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t claimed = 0;
  uint64_t released = 0;
};

struct OriginModel {
  std::string name;
  uint64_t size = 0;
  std::shared_ptr<FaultInjectingDevice> device;  // kept across detach and attach
  std::mutex mutex;
  std::condition_variable changed;
  std::shared_ptr<Origin> origin;                    // GUARDED_BY(mutex): the attached Origin
  std::vector<uint8_t> reference;                    // GUARDED_BY(mutex)
  std::vector<std::shared_ptr<OriginOp>> in_flight;  // GUARDED_BY(mutex)
  std::vector<TakeWindow*> open_takes;               // GUARDED_BY(mutex)
  // Finished writes, zeroes and trims without their data (but for trims), to explain a failure.
  std::vector<std::shared_ptr<const OriginOp>> history;  // GUARDED_BY(mutex)
  // Writes claimed after the last take of this origin ended (GUARDED_BY(mutex)) and that take's frozen CBT
  // (controller thread only).
  std::vector<CbtWrite> cbt_pending;
  uint64_t cbt_last_take_ended = 0;
  std::shared_ptr<const CbtFrozen> cbt_last_take;
  std::string snapshot;  // controller thread only
};

struct ImageModel {
  OriginModel* origin = nullptr;
  std::shared_ptr<Image> image;
  std::vector<uint8_t> frozen;                        // the reference at take (plus image writes)
  std::vector<std::shared_ptr<OriginOp>> candidates;  // writes that may or may not be in the image
  std::vector<uint8_t> image_written;  // writable snapshots: 1 where an image write decided, 2 where unknown
  uint64_t take_started = 0;           // model clock around take_snapshot
  uint64_t take_ended = 0;
  std::shared_ptr<std::atomic<bool>> dropped = std::make_shared<std::atomic<bool>>(false);  // by a detach
};

struct SnapshotModel {
  std::string name;
  bool writable = false;
  bool racing = false;
  std::vector<ImageModel> images;
  std::vector<std::string> storage_paths;
  std::atomic<bool> destroying{false};
};

// Lets the controller pause every writer between two operations.
class WriterGate {
 public:
  explicit WriterGate(int writers) : active_(writers) {}
  void pass() {
    std::unique_lock lock(mutex_);
    if (!pause_) return;
    ++paused_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return !pause_; });
    --paused_;
  }
  void pause_all() {
    std::unique_lock lock(mutex_);
    pause_ = true;
    changed_.wait(lock, [this] { return paused_ == active_; });
  }
  void resume() {
    std::scoped_lock lock(mutex_);
    pause_ = false;
    changed_.notify_all();
  }
  void leave() {
    std::scoped_lock lock(mutex_);
    --active_;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool pause_ = false;  // GUARDED_BY(mutex_)
  int active_;          // GUARDED_BY(mutex_)
  int paused_ = 0;      // GUARDED_BY(mutex_)
};

struct ModelCounts {
  std::atomic<uint64_t> writes{0}, zeroes{0}, trims{0}, origin_reads{0}, flushes{0};
  std::atomic<uint64_t> takes{0}, racing_takes{0}, raced_writes{0}, destroys{0}, image_reads{0},
      image_writes{0};
  std::atomic<uint64_t> detaches{0}, refused_by_detach{0}, failed_image_calls{0}, cbt_checks{0}, infos{0};
  std::atomic<uint64_t> corrupted_snapshots{0}, image_calls_after_destroy{0}, image_calls_after_detach{0};
  uint64_t total() const {
    return writes.load() + zeroes.load() + trims.load() + origin_reads.load() + flushes.load() +
           takes.load() + destroys.load() + image_reads.load() + image_writes.load() + detaches.load() +
           infos.load();
  }
};

// Thread slots of the watchdog.
constexpr int kReaderSlot = 12, kImageWriterSlot = 13, kControllerSlot = 14;

class Model {
 public:
  Model(uint64_t seed, uint64_t operations, bool inject_faults)
      : seed_(seed), operations_(operations), inject_faults_(inject_faults) {
    std::mt19937_64 random(seed);
    chunk_shift_ = 12 + static_cast<unsigned>(random() % 5);  // 4 KiB .. 64 KiB chunks
    chunk_ = uint64_t{1} << chunk_shift_;
    writers_ = 2 + static_cast<int>(random() % 3);
    racing_ = random() % 4 != 0;  // most seeds mix racing takes with quiesced ones
    if (inject_faults) {
      // From rare (a few corrupted snapshots per run) to frequent (most snapshots corrupted).
      const uint32_t scale = 1u << (random() % 4);
      faults.origin_read = 250 * scale;
      faults.storage_read = 250 * scale;
      faults.storage_write = 500 * scale;
      faults.allocation = 500 * scale;
    }
    EngineConfig config;
    config.sizing = small_sizing(chunk_shift_, 12 + static_cast<unsigned>(random() % 4));
    config.chunk_buffer_budget = chunk_ * (2 + random() % 16);
    config.copy_io_size = std::max<uint64_t>(4096, chunk_ >> (random() % 3));
    config.low_space_threshold = 0;
    // With a state directory a detached origin keeps its CBT generation when it is attached again, so the CBT
    // check spans detaches: a write that slipped past a closed gate would show as under-reported.
    config.state_dir = state_dir_.path().string();
    config.wrap_storage_device = [](std::shared_ptr<BlockDevice> file) -> std::shared_ptr<BlockDevice> {
      return std::make_shared<FaultInjectingDevice>(std::move(file), &faults.storage_read,
                                                    &faults.storage_write);
    };
    budget_ = config.chunk_buffer_budget;
    engine_ = std::make_unique<Engine>(config);
    const uint64_t sizes[] = {1024 * KiB, 1024 * KiB - 3 * 512, 640 * KiB + 4096};
    for (int i = 0; i < 3; ++i) {
      auto model = std::make_unique<OriginModel>();
      model->name = "origin" + std::to_string(i);
      model->size = sizes[i];
      auto memory = std::make_shared<MemoryDevice>(model->size);
      fill_device(*memory, 1000 + i);
      model->device = std::make_shared<FaultInjectingDevice>(memory, &faults.origin_read, nullptr);
      REQUIRE_OK(engine_->attach_origin(model->name, model->device, false));
      model->origin = engine_->find_origin(model->name);
      model->reference = pattern(model->size, 0, 1000 + i);
      origins_.push_back(std::move(model));
    }
  }

  void run();
  const ModelCounts& counts() const { return counts_; }
  const Failures& failures() const { return failures_; }
  std::string describe() const {
    std::ostringstream out;
    out << "seed " << seed_ << ": chunk " << chunk_ << " bytes, " << writers_ << " writers, "
        << (racing_ ? "racing and quiesced takes" : "quiesced takes");
    if (inject_faults_) {
      out << ", faults per million: origin read " << faults.origin_read << ", storage read "
          << faults.storage_read << ", storage write " << faults.storage_write << ", allocation "
          << faults.allocation;
    }
    return out.str();
  }

 private:
  // A random range of an origin of `size` bytes, biased to chunk boundaries and odd lengths.
  std::pair<uint64_t, uint64_t> random_range(std::mt19937_64& random, uint64_t size) const;
  void writer_loop(int id);
  void reader_loop();
  void image_writer_loop();
  void controller_loop();
  void origin_operation(std::mt19937_64& random, uint32_t& version, int id);
  Status run_origin_operation(std::mt19937_64& random, Origin& origin, OriginOp& op, int id);
  std::shared_ptr<Origin> claim_range(OriginModel& model, const std::shared_ptr<OriginOp>& op);
  void release_range(OriginModel& model, const std::shared_ptr<OriginOp>& op);
  void take(std::mt19937_64& random);
  void check_cbt(OriginModel& model, const ImageModel& image);
  void destroy(std::mt19937_64& random);
  void destroy_snapshot(const std::shared_ptr<SnapshotModel>& snapshot);
  void detach(std::mt19937_64& random);
  void look_at_info();
  // Reads a random range of a random image and checks it; false when there was no image to read.
  bool read_image(std::mt19937_64& random, bool writable, int slot);
  void write_image(std::mt19937_64& random, uint32_t& version);
  // Whether an image call's failure is allowed; reports it otherwise.
  bool image_failure_allowed(const SnapshotModel& snapshot, const ImageModel& image, const Status& status,
                             const char* call);
  void check_image_read(const SnapshotModel& snapshot, const ImageModel& image, const uint8_t* buf,
                        uint64_t len, uint64_t offset, uint64_t read_started, const char* note = "");
  // Which origin operations wrote `value` at byte `at`, relative to the take: the culprit of a failure.
  std::string explain(const ImageModel& image, uint64_t at, uint8_t value);
  std::shared_ptr<SnapshotModel> pick_snapshot(std::mt19937_64& random, bool writable);
  // A random image of the snapshot, one whose origin is still in it if there is one.
  ImageModel& pick_image(std::mt19937_64& random, SnapshotModel& snapshot);
  void finish();

  const uint64_t seed_;
  const uint64_t operations_;
  const bool inject_faults_;  // image calls may fail (also after the faults stop: snapshots stay corrupted)
  unsigned chunk_shift_ = 12;
  uint64_t chunk_ = 4096;
  uint64_t budget_ = 0;
  int writers_ = 2;
  bool racing_ = true;
  TempDir dir_;  // difference storage
  // CBT state, saved with fsync under the engine's control lock: in memory, so that the call watchdog's
  // bound (kCallLimit) times the engine, not a disk shared with the other tests of a parallel run.
  TempDir state_dir_ = TempDir::in_memory();
  std::unique_ptr<Engine> engine_;
  std::vector<std::unique_ptr<OriginModel>> origins_;
  std::atomic<bool> controller_done_{false};
  std::atomic<uint64_t> clock_{0};  // orders claims, releases, takes and reads in failure reports
  std::atomic<uint64_t> controller_ops_{0};
  // Writers and readers keep pace with the controller, so a run has takes and destroys all along it.
  bool ahead_of_controller(uint64_t my_ops) const { return my_ops > 2 * controller_ops_.load() + 20; }
  ModelCounts counts_;
  Failures failures_;
  CallWatchdog watchdog_;
  std::unique_ptr<WriterGate> gate_;
  std::mutex registry_mutex_;
  std::map<std::string, std::shared_ptr<SnapshotModel>> snapshots_;  // GUARDED_BY(registry_mutex_)
  uint64_t snapshot_counter_ = 0;                                    // controller thread only
};

std::pair<uint64_t, uint64_t> Model::random_range(std::mt19937_64& random, uint64_t size) const {
  uint64_t offset = 0;
  uint64_t length = 1;
  switch (random() % 10) {
    case 0:
    case 1:
    case 2:  // small and unaligned
      length = 1 + random() % 600;
      offset = random() % size;
      break;
    case 3:
    case 4:  // sector aligned
      length = 512 * (1 + random() % 16);
      offset = 512 * (random() % (size / 512));
      break;
    case 5:
    case 6: {  // across a chunk boundary
      const uint64_t boundary = chunk_ * (1 + random() % std::max<uint64_t>(1, size / chunk_ - 1));
      offset = boundary - std::min(boundary, 1 + random() % chunk_);
      length = 2 + random() % (2 * chunk_);
      break;
    }
    case 7:
    case 8:  // whole chunks
      offset = chunk_ * (random() % (size / chunk_));
      length = chunk_ * (1 + random() % 3);
      break;
    default:  // large
      length = 1 + random() % (4 * chunk_ + 4096);
      offset = random() % size;
      break;
  }
  offset = std::min(offset, size - 1);
  length = std::max<uint64_t>(1, std::min(length, size - offset));
  return {offset, length};
}

std::shared_ptr<Origin> Model::claim_range(OriginModel& model, const std::shared_ptr<OriginOp>& op) {
  std::unique_lock lock(model.mutex);
  model.changed.wait(lock, [&] {
    for (const auto& other : model.in_flight)
      if (other->offset < op->offset + op->length && op->offset < other->offset + other->length) return false;
    return true;
  });
  op->claimed = ++clock_;
  model.in_flight.push_back(op);
  if (op->kind != OpKind::read)
    for (TakeWindow* window : model.open_takes) window->ops.push_back(op);
  return model.origin;
}

void Model::release_range(OriginModel& model, const std::shared_ptr<OriginOp>& op) {
  std::scoped_lock lock(model.mutex);
  const bool changed = op->kind != OpKind::read && op->performed;
  if (changed)
    std::copy(op->data.begin(), op->data.end(), model.reference.begin() + static_cast<ptrdiff_t>(op->offset));
  op->released = ++clock_;
  op->done = true;
  if (changed) {
    auto light = std::make_shared<OriginOp>();
    light->kind = op->kind;
    light->offset = op->offset;
    light->length = op->length;
    light->version = op->version;
    light->claimed = op->claimed;
    light->released = op->released;
    if (op->kind == OpKind::trim) light->data = op->data;
    model.history.push_back(std::move(light));
    if (op->claimed > model.cbt_last_take_ended)
      model.cbt_pending.push_back({op->offset, op->length, op->claimed, op->released});
  }
  model.in_flight.erase(std::find(model.in_flight.begin(), model.in_flight.end(), op));
  model.changed.notify_all();
}

Status Model::run_origin_operation(std::mt19937_64& random, Origin& origin, OriginOp& op, int id) {
  CallWatchdog::Call call(watchdog_, id, "an origin operation");
  const bool fua = random() % 8 == 0;
  switch (op.kind) {
    case OpKind::write: {
      ++counts_.writes;
      return origin.write(op.data.data(), op.length, op.offset, fua);
    }
    case OpKind::zero:
      ++counts_.zeroes;
      return origin.zero(op.offset, op.length, random() % 2 == 0, fua);
    case OpKind::trim: {
      ++counts_.trims;
      Status status = origin.trim(op.offset, op.length, fua);
      return status;
    }
    case OpKind::read: {
      ++counts_.origin_reads;
      op.data.resize(op.length);
      return origin.read(op.data.data(), op.length, op.offset);
    }
  }
  return Status::ok();
}

void Model::origin_operation(std::mt19937_64& random, uint32_t& version, int id) {
  OriginModel& model = *origins_[random() % origins_.size()];
  auto op = std::make_shared<OriginOp>();
  const unsigned pick = random() % 100;
  op->kind = pick < 62 ? OpKind::write : pick < 74 ? OpKind::zero : pick < 84 ? OpKind::trim : OpKind::read;
  if (pick >= 97) {
    std::shared_ptr<Origin> origin;
    {
      std::scoped_lock lock(model.mutex);
      origin = model.origin;
    }
    CallWatchdog::Call call(watchdog_, id, "an origin flush");
    const Status status = origin->flush();
    if (!status && origin->check_attached().is_ok()) failures_.add("origin flush: " + status.to_string());
    ++counts_.flushes;
    return;
  }
  std::tie(op->offset, op->length) = random_range(random, model.size);
  if (op->kind == OpKind::write) {
    op->version = (static_cast<uint32_t>(id) << 24) | ++version;
    op->data = pattern(op->length, op->offset, op->version);
  }
  if (op->kind == OpKind::zero) op->data.assign(op->length, 0);
  const std::shared_ptr<Origin> origin = claim_range(model, op);
  const Status status = run_origin_operation(random, *origin, *op, id);
  const bool refused_by_detach =
      !status && status.code() == Errc::io_error && !origin->check_attached().is_ok();
  if (refused_by_detach) {
    op->performed = false;  // the gate refused it before the device was touched
    ++counts_.refused_by_detach;
  } else if (op->kind == OpKind::read) {
    std::scoped_lock lock(model.mutex);
    if (status && !std::equal(op->data.begin(), op->data.end(),
                              model.reference.begin() + static_cast<ptrdiff_t>(op->offset))) {
      std::ostringstream out;
      out << model.name << " read [" << op->offset << ", +" << op->length << ") differs from the reference";
      failures_.add(out.str());
    }
    if (!status && !(inject_faults_ && status.code() == Errc::io_error))
      failures_.add(model.name + " read failed: " + status.to_string());
  } else {
    if (!status) {  // invariant 2: origin writes never fail because of a snapshot
      std::ostringstream out;
      out << model.name << " op " << static_cast<int>(op->kind) << " [" << op->offset << ", +" << op->length
          << ") failed: " << status.to_string();
      failures_.add(out.str());
    }
    if (op->kind == OpKind::trim || !status) {
      // A trim leaves what the device reads now; after a failure the reference cannot be trusted either.
      Bookkeeping own_read;
      op->data.resize(op->length);
      (void)model.device->pread(op->data.data(), op->length, op->offset);
    }
  }
  release_range(model, op);
}

void Model::writer_loop(int id) {
  std::mt19937_64 random(seed_ * 1000 + static_cast<uint64_t>(id));
  uint32_t version = 0;
  uint64_t my_ops = 0;
  while (!controller_done_) {
    gate_->pass();
    if (ahead_of_controller(my_ops)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    origin_operation(random, version, id);
    ++my_ops;
  }
  gate_->leave();
}

std::shared_ptr<SnapshotModel> Model::pick_snapshot(std::mt19937_64& random, bool writable) {
  std::scoped_lock lock(registry_mutex_);
  std::vector<std::shared_ptr<SnapshotModel>> candidates;
  // A snapshot being destroyed only answers not_found (reads that started before its destroy still race it).
  for (const auto& [name, snapshot] : snapshots_)
    if (snapshot->writable == writable && !snapshot->destroying) candidates.push_back(snapshot);
  if (candidates.empty()) return nullptr;
  return candidates[random() % candidates.size()];
}

ImageModel& Model::pick_image(std::mt19937_64& random, SnapshotModel& snapshot) {
  const size_t first = random() % snapshot.images.size();
  for (size_t i = 0; i < snapshot.images.size(); ++i) {
    ImageModel& image = snapshot.images[(first + i) % snapshot.images.size()];
    if (!image.dropped->load()) return image;
  }
  return snapshot.images[first];
}

std::string Model::explain(const ImageModel& image, uint64_t at, uint8_t value) {
  std::ostringstream out;
  std::scoped_lock lock(image.origin->mutex);
  int found = 0;
  auto describe = [&](const OriginOp& op, const char* state) {
    if (at < op.offset || at >= op.offset + op.length) return;
    uint8_t wrote = 0;
    if (op.kind == OpKind::write) wrote = pattern_byte(at, op.version);
    if (op.kind == OpKind::trim) wrote = op.data.empty() ? 0 : op.data[at - op.offset];
    if (wrote != value || ++found > 4) return;
    const char* kind = op.kind == OpKind::write ? "write" : op.kind == OpKind::zero ? "zero" : "trim";
    out << "; matches " << state << " " << kind << " [" << op.offset << ", +" << op.length << ") claimed at "
        << op.claimed
        << (op.claimed > image.take_ended     ? " (after the take)"
            : op.claimed < image.take_started ? " (before the take)"
                                              : " (during the take)");
    if (op.released) out << ", released at " << op.released;
  };
  for (const auto& op : image.origin->history) describe(*op, "finished");
  for (const auto& op : image.origin->in_flight) describe(*op, "in-flight");
  if (found == 0) out << "; no origin operation wrote this value here";
  return out.str();
}

void Model::check_image_read(const SnapshotModel& snapshot, const ImageModel& image, const uint8_t* buf,
                             uint64_t len, uint64_t offset, uint64_t read_started, const char* note) {
  for (uint64_t i = 0; i < len; ++i) {
    const uint64_t at = offset + i;
    if (buf[i] == image.frozen[at]) continue;
    const uint8_t decided = image.image_written.empty() ? 0 : image.image_written[at];
    if (decided == 2) continue;  // a failed image write may or may not have changed this byte
    bool allowed = false;
    if (decided == 0) {
      for (const auto& op : image.candidates) {
        if (op->performed && at >= op->offset && at < op->offset + op->length &&
            op->data[at - op->offset] == buf[i]) {
          allowed = true;
          break;
        }
      }
    }
    if (!allowed) {
      std::ostringstream out;
      out << "image " << image.origin->name << "@" << snapshot.name
          << (snapshot.racing ? " (racing take)" : "") << " read [" << offset << ", +" << len << "): byte "
          << at << " is " << int{buf[i]} << ", take-time " << int{image.frozen[at]} << ", "
          << image.candidates.size() << " writes in flight at take; take clock [" << image.take_started
          << ", " << image.take_ended << "], read at " << read_started
          << (snapshot.writable ? ", writable" : "") << note << explain(image, at, buf[i]);
      failures_.add(out.str());
      return;
    }
  }
}

bool Model::image_failure_allowed(const SnapshotModel& snapshot, const ImageModel& image,
                                  const Status& status, const char* call) {
  ++counts_.failed_image_calls;
  if (status.code() == Errc::not_found && snapshot.destroying) {
    ++counts_.image_calls_after_destroy;
    return true;
  }
  if (status.code() == Errc::not_found && image.dropped->load()) {
    ++counts_.image_calls_after_detach;
    return true;
  }
  if (inject_faults_ && (status.code() == Errc::corrupted || status.code() == Errc::io_error ||
                         status.code() == Errc::no_memory)) {
    return true;
  }
  failures_.add(std::string(call) + " " + image.origin->name + "@" + snapshot.name + ": " +
                status.to_string());
  return false;
}

bool Model::read_image(std::mt19937_64& random, bool writable, int slot) {
  auto snapshot = pick_snapshot(random, writable);
  if (!snapshot) return false;
  const ImageModel& image = pick_image(random, *snapshot);
  uint64_t offset = 0;
  uint64_t length = image.origin->size;
  if (random() % 20 != 0) std::tie(offset, length) = random_range(random, image.origin->size);
  std::vector<uint8_t> buf(length);
  const uint64_t read_started = ++clock_;
  const bool destroying_before = snapshot->destroying;
  Status status;
  {
    CallWatchdog::Call call(watchdog_, slot, "an image read");
    status = image.image->read(buf.data(), length, offset);
  }
  const bool destroying_after = snapshot->destroying;
  ++counts_.image_reads;
  if (!status) {
    image_failure_allowed(*snapshot, image, status, "image read");
    return true;
  }
  const char* note = destroying_before  ? ", read while the snapshot was destroyed"
                     : destroying_after ? ", snapshot destroy started during the read"
                                        : "";
  check_image_read(*snapshot, image, buf.data(), length, offset, read_started, note);
  return true;
}

void Model::write_image(std::mt19937_64& random, uint32_t& version) {
  auto snapshot = pick_snapshot(random, true);
  if (!snapshot) return;
  ImageModel& image = pick_image(random, *snapshot);
  const auto [offset, length] = random_range(random, image.origin->size);
  std::vector<uint8_t> data;
  Status status;
  {
    CallWatchdog::Call call(watchdog_, kImageWriterSlot, "an image write");
    if (random() % 4 == 0) {
      data.assign(length, 0);
      status = image.image->zero(offset, length);
    } else {
      data = pattern(length, offset, (0xffu << 24) | ++version);
      status = image.image->write(data.data(), length, offset);
    }
  }
  ++counts_.image_writes;
  const uint8_t decided = status ? 1 : 2;  // a failed write may have changed some of the range
  if (!status) image_failure_allowed(*snapshot, image, status, "image write");
  if (status) std::copy(data.begin(), data.end(), image.frozen.begin() + static_cast<ptrdiff_t>(offset));
  std::fill(image.image_written.begin() + static_cast<ptrdiff_t>(offset),
            image.image_written.begin() + static_cast<ptrdiff_t>(offset + length), decided);
}

// Invariant 3: every write completed between the previous take of this origin and this one (same generation)
// is marked changed in this take's frozen map.
void Model::check_cbt(OriginModel& model, const ImageModel& image) {
  const CbtFrozen& frozen = image.image->cbt();
  std::scoped_lock lock(model.mutex);
  if (model.cbt_last_take && model.cbt_last_take->generation == frozen.generation) {
    const uint8_t since = model.cbt_last_take->number;
    for (const CbtWrite& write : model.cbt_pending) {
      if (write.released >= image.take_started) continue;  // racing this take: it may fall on either side
      ++counts_.cbt_checks;
      uint64_t covered = 0;
      for (const Range& r : frozen.changed_ranges(since, write.offset, write.length)) covered += r.length;
      if (covered != write.length) {
        std::ostringstream out;
        out << "CBT of " << model.name << " at take " << image.take_started << " under-reports the write ["
            << write.offset << ", +" << write.length << ") claimed at " << write.claimed << ", released at "
            << write.released << ": " << covered << " bytes marked changed since change number "
            << int{since};
        failures_.add(out.str());
      }
    }
  }
  model.cbt_last_take = image.image->cbt().generation == frozen.generation
                            ? std::shared_ptr<const CbtFrozen>(image.image, &image.image->cbt())
                            : nullptr;
  model.cbt_last_take_ended = image.take_ended;
  std::erase_if(model.cbt_pending, [&](const CbtWrite& w) { return w.claimed <= image.take_ended; });
}

void Model::take(std::mt19937_64& random) {
  std::vector<OriginModel*> free;
  for (auto& model : origins_)
    if (model->snapshot.empty() && random() % 3 != 0) free.push_back(model.get());
  if (free.empty()) return;
  auto snapshot = std::make_shared<SnapshotModel>();
  snapshot->name = "snap" + std::to_string(++snapshot_counter_);
  snapshot->writable = random() % 4 == 0;
  snapshot->racing = racing_ && random() % 2 == 0;
  uint64_t total = 0;
  std::vector<std::string> names;
  for (OriginModel* model : free) {
    total += model->size;
    names.push_back(model->name);
  }
  const uint64_t storage = 2 * total + 4 * chunk_;
  SnapshotOptions options;
  options.writable = snapshot->writable;
  const bool add_later = names.size() > 1 && random() % 2 == 0;
  options.origins = add_later ? std::vector<std::string>{names[0]} : names;
  const int files = 1 + static_cast<int>(random() % 2);
  for (int f = 0; f < files; ++f) {
    snapshot->storage_paths.push_back(dir_.file(snapshot->name + "." + std::to_string(f)));
    options.storage.push_back({snapshot->storage_paths.back(), storage / files + 4096});
  }
  Status status;
  {
    CallWatchdog::Call call(watchdog_, kControllerSlot, "create_snapshot");
    status = engine_->create_snapshot(snapshot->name, options);
    for (size_t i = 1; add_later && status && i < names.size(); ++i)
      status = engine_->add_origin_to_snapshot(snapshot->name, names[i]);
  }
  if (!status) {
    failures_.add("create " + snapshot->name + ": " + status.to_string());
    (void)engine_->destroy_snapshot(snapshot->name);
    return;
  }
  for (OriginModel* model : free) model->snapshot = snapshot->name;

  // Freeze the model: copy each reference and open a window that collects the writes starting during take.
  std::vector<TakeWindow> windows(free.size());
  snapshot->images.resize(free.size());
  if (!snapshot->racing) gate_->pause_all();
  for (size_t i = 0; i < free.size(); ++i) {
    std::scoped_lock lock(free[i]->mutex);
    snapshot->images[i].origin = free[i];
    snapshot->images[i].frozen = free[i]->reference;
    snapshot->images[i].take_started = ++clock_;
    for (const auto& op : free[i]->in_flight)
      if (op->kind != OpKind::read) windows[i].ops.push_back(op);
    free[i]->open_takes.push_back(&windows[i]);
  }
  {
    CallWatchdog::Call call(watchdog_, kControllerSlot, "take_snapshot");
    status = engine_->take_snapshot(snapshot->name);
  }
  const uint64_t take_ended = ++clock_;
  for (size_t i = 0; i < free.size(); ++i) {
    std::scoped_lock lock(free[i]->mutex);
    snapshot->images[i].take_ended = take_ended;
    auto& open = free[i]->open_takes;
    open.erase(std::find(open.begin(), open.end(), &windows[i]));
  }
  if (!snapshot->racing) gate_->resume();
  ++counts_.takes;
  if (snapshot->racing) ++counts_.racing_takes;
  if (!status) {
    failures_.add("take " + snapshot->name + ": " + status.to_string());
    destroy_snapshot(snapshot);
    return;
  }
  // Wait for the candidates to finish so their data is final, then publish the snapshot.
  for (size_t i = 0; i < free.size(); ++i) {
    ImageModel& image = snapshot->images[i];
    if (!snapshot->racing && !windows[i].ops.empty())
      failures_.add("test bug: writes in flight at a quiesced take");
    std::unique_lock lock(free[i]->mutex);
    free[i]->changed.wait(lock, [&] {
      return std::all_of(windows[i].ops.begin(), windows[i].ops.end(),
                         [](const auto& op) { return op->done; });
    });
    counts_.raced_writes += windows[i].ops.size();
    image.candidates = std::move(windows[i].ops);
    lock.unlock();
    if (snapshot->writable) image.image_written.assign(free[i]->size, 0);
    status = engine_->find_image(free[i]->name, snapshot->name, image.image);
    if (!status) {
      failures_.add("find_image " + free[i]->name + "@" + snapshot->name + ": " + status.to_string());
      destroy_snapshot(snapshot);
      return;
    }
    check_cbt(*free[i], image);
  }
  std::scoped_lock lock(registry_mutex_);
  snapshots_[snapshot->name] = snapshot;
}

void Model::destroy_snapshot(const std::shared_ptr<SnapshotModel>& snapshot) {
  SnapshotInfo info;
  if (engine_->snapshot_info(snapshot->name, info).is_ok() && info.state == SnapshotState::corrupted)
    ++counts_.corrupted_snapshots;
  snapshot->destroying = true;
  Status status;
  {
    CallWatchdog::Call call(watchdog_, kControllerSlot, "destroy_snapshot");
    status = engine_->destroy_snapshot(snapshot->name);
  }
  ++counts_.destroys;
  if (!status) failures_.add("destroy " + snapshot->name + ": " + status.to_string());
  {
    std::scoped_lock lock(registry_mutex_);
    snapshots_.erase(snapshot->name);
  }
  for (auto& model : origins_)
    if (model->snapshot == snapshot->name) model->snapshot.clear();
  for (const ImageModel& image : snapshot->images) {
    if (!image.image) continue;
    uint8_t byte = 0;
    const Status read = image.image->read(&byte, 1, 0);
    if (read.code() != Errc::not_found)
      failures_.add("image read after destroy of " + snapshot->name + ": " + read.to_string() +
                    ", want not_found");
  }
  for (const std::string& path : snapshot->storage_paths)
    if (std::filesystem::exists(path)) failures_.add("storage file left after destroy: " + path);
}

void Model::destroy(std::mt19937_64& random) {
  auto snapshot = pick_snapshot(random, random() % 4 == 0);
  if (snapshot) destroy_snapshot(snapshot);
}

// Detaches an origin (by force if it is in a snapshot, dropping its image) and attaches it again.
void Model::detach(std::mt19937_64& random) {
  OriginModel& model = *origins_[random() % origins_.size()];
  const bool in_snapshot = !model.snapshot.empty();
  if (in_snapshot) {
    std::scoped_lock lock(registry_mutex_);
    if (auto it = snapshots_.find(model.snapshot); it != snapshots_.end()) {
      for (ImageModel& image : it->second->images)
        if (image.origin == &model) *image.dropped = true;
    }
  }
  Status status;
  {
    CallWatchdog::Call call(watchdog_, kControllerSlot, "detach_origin");
    status = engine_->detach_origin(model.name, in_snapshot || random() % 2 == 0);
  }
  ++counts_.detaches;
  if (!status) {
    failures_.add("detach " + model.name + ": " + status.to_string());
    return;
  }
  const std::string dropped_from = model.snapshot;
  model.snapshot.clear();
  if (!dropped_from.empty()) {  // a snapshot left with no image is of no more use: destroy it
    std::shared_ptr<SnapshotModel> snapshot;
    {
      std::scoped_lock lock(registry_mutex_);
      if (auto it = snapshots_.find(dropped_from); it != snapshots_.end()) snapshot = it->second;
    }
    if (snapshot && std::all_of(snapshot->images.begin(), snapshot->images.end(),
                                [](const ImageModel& image) { return image.dropped->load(); })) {
      destroy_snapshot(snapshot);
    }
  }
  {
    CallWatchdog::Call call(watchdog_, kControllerSlot, "attach_origin");
    status = engine_->attach_origin(model.name, model.device, false);
  }
  if (!status) {
    failures_.add("attach " + model.name + " after detach: " + status.to_string());
    return;
  }
  std::scoped_lock lock(model.mutex);
  model.origin = engine_->find_origin(model.name);
}

// Info calls take the engine's and the snapshots' locks from another thread, so that TSan sees their order
// against the copy-on-write path's.
void Model::look_at_info() {
  CallWatchdog::Call call(watchdog_, kReaderSlot, "info");
  uint64_t buffered = engine_->chunk_buffer_bytes();
  if (buffered > budget_)
    failures_.add("chunk buffers hold " + std::to_string(buffered) + " bytes, over the budget");
  for (const SnapshotInfo& info : engine_->snapshots()) {
    if (info.state == SnapshotState::corrupted && info.corruption_reason.empty())
      failures_.add("snapshot " + info.name + " is corrupted without a reason");
  }
  (void)engine_->origins();
  (void)engine_->memory_bytes();
  ++counts_.infos;
}

void Model::reader_loop() {
  std::mt19937_64 random(seed_ * 1000 + 999);
  uint64_t my_ops = 0;
  while (!controller_done_) {
    if (random() % 16 == 0) look_at_info();
    if (ahead_of_controller(my_ops) || !read_image(random, false, kReaderSlot)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    ++my_ops;
  }
}

void Model::image_writer_loop() {
  std::mt19937_64 random(seed_ * 1000 + 777);
  uint32_t version = 0;
  uint64_t my_ops = 0;
  while (!controller_done_) {
    if (ahead_of_controller(my_ops) || !pick_snapshot(random, true)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    if (random() % 2 == 0) {
      write_image(random, version);
    } else {
      (void)read_image(random, true, kImageWriterSlot);
    }
    ++my_ops;
  }
}

void Model::controller_loop() {
  std::mt19937_64 random(seed_ * 1000 + 500);
  // The controller runs until every thread together did the operations asked for.
  for (; counts_.total() < operations_; ++controller_ops_) {
    const unsigned pick = random() % 100;
    if (pick < 25)
      take(random);
    else if (pick < 37)
      destroy(random);
    else if (pick < 39)
      detach(random);
    else
      (void)read_image(random, false, kControllerSlot);
  }
  controller_done_ = true;
}

void Model::finish() {
  std::vector<std::shared_ptr<SnapshotModel>> left;
  {
    std::scoped_lock lock(registry_mutex_);
    for (const auto& [name, snapshot] : snapshots_) left.push_back(snapshot);
  }
  for (const auto& snapshot : left) {
    for (const ImageModel& image : snapshot->images) {
      std::vector<uint8_t> buf(image.origin->size);
      const Status status = image.image->read(buf.data(), buf.size(), 0);
      if (!status)
        image_failure_allowed(*snapshot, image, status, "final image read");
      else
        check_image_read(*snapshot, image, buf.data(), buf.size(), 0, clock_);
    }
    destroy_snapshot(snapshot);
  }
  for (auto& model : origins_) {
    std::vector<uint8_t> buf(model->size);
    Bookkeeping own_read;
    const Status status = model->device->pread(buf.data(), buf.size(), 0);
    std::scoped_lock lock(model->mutex);
    if (!status || buf != model->reference)
      failures_.add("final origin content of " + model->name + " differs");
  }
  // Invariant 4: nothing of the snapshots stays in memory.
  if (engine_->chunk_buffer_bytes() != 0)
    failures_.add(std::to_string(engine_->chunk_buffer_bytes()) +
                  " bytes of chunk buffers left after every destroy");
  if (!std::filesystem::is_empty(dir_.path())) failures_.add("files left in the storage directory");
}

void Model::run() {
  set_chunk_allocation_hook(allocation_hook);
  gate_ = std::make_unique<WriterGate>(writers_);
  std::vector<std::thread> threads;
  for (int id = 0; id < writers_; ++id) threads.emplace_back([this, id] { writer_loop(id); });
  threads.emplace_back([this] { reader_loop(); });
  threads.emplace_back([this] { image_writer_loop(); });
  controller_loop();
  for (auto& thread : threads) thread.join();
  faults.clear();  // the final checks read without faults
  finish();
  set_chunk_allocation_hook(nullptr);
}

void run_seed(uint64_t seed, uint64_t operations, bool inject_faults) {
  const auto start = std::chrono::steady_clock::now();
  faults.injected = 0;
  Model model(seed, operations, inject_faults);
  const std::string description = model.describe();
  model.run();
  const auto& counts = model.counts();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  MESSAGE(description << ": " << counts.total() << " operations in " << ms << " ms (" << counts.writes.load()
                      << " writes, " << counts.zeroes.load() << " zeroes, " << counts.trims.load()
                      << " trims, " << counts.origin_reads.load() << " origin reads, "
                      << counts.flushes.load() << " flushes, " << counts.takes.load() << " takes of which "
                      << counts.racing_takes.load() << " racing with " << counts.raced_writes.load()
                      << " writes in flight, " << counts.destroys.load() << " destroys ("
                      << counts.corrupted_snapshots.load() << " snapshots corrupted), "
                      << counts.detaches.load() << " detaches refusing " << counts.refused_by_detach.load()
                      << " writes, " << counts.image_reads.load() << " image reads, "
                      << counts.image_writes.load() << " image writes, " << counts.failed_image_calls.load()
                      << " image calls failed (" << counts.image_calls_after_destroy.load()
                      << " during destroy, " << counts.image_calls_after_detach.load() << " after detach), "
                      << counts.cbt_checks.load() << " writes checked in CBT, " << counts.infos.load()
                      << " info calls, " << faults.injected.load() << " faults injected)");
  for (const std::string& message : model.failures().messages()) FAIL_CHECK(description << ": " << message);
  CHECK_MESSAGE(model.failures().count() == 0,
                description << ": " << model.failures().count() << " failures");
  CHECK(counts.takes.load() > 0);
}

}  // namespace

TEST_CASE(
    "images, origins and CBT keep the invariants under random concurrent I/O, takes, destroys, detaches "
    "and injected faults") {
  const uint64_t operations = env_u64("NBDSNAP_MODEL_OPS", kDefaultOperations);
  std::vector<uint64_t> seeds;
  if (std::getenv("NBDSNAP_SEED") != nullptr) {
    seeds.push_back(env_u64("NBDSNAP_SEED", 1));
  } else {
    seeds = {1, 2, 3, std::random_device{}()};
    MESSAGE("random seed " << seeds.back() << " (rerun with NBDSNAP_SEED=" << seeds.back() << ")");
  }
  for (const uint64_t seed : seeds) {
    CAPTURE(seed);
    run_seed(seed, operations, seed != 1);  // seed 1 runs without faults: no image call may fail there
  }
}
