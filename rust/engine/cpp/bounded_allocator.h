// Bounded ArrayBuffer allocation: off-heap bytes (ArrayBuffers, typed arrays,
// WebAssembly memory) are counted against a per-execution budget, so that
// `new Uint8Array(2**31)` under a 64 MB cap is a RangeError instead of 2 GB of RSS.
#pragma once
#include <v8.h>

#include <atomic>
#include <cstddef>

namespace mv8 {

// The counters. Shared by the allocator and the execution that reads them; frees may
// come from V8's background threads, hence atomics.
class OffHeapBudget {
 public:
  explicit OffHeapBudget(size_t limit) : limit_(limit) {}
  bool Reserve(size_t bytes);
  void Release(size_t bytes);
  size_t peak() const { return peak_.load(); }
  size_t used() const { return used_.load(); }
  bool refused() const { return refused_.load(); }
  // A live context's budget outlives each run: the refusal of one run is not the next's.
  void ClearRefused() { refused_.store(false); }
  // Forgets every count; only while no isolate allocates against the budget.
  void Reset() {
    used_.store(0);
    peak_.store(0);
    refused_.store(false);
  }

 private:
  const size_t limit_;  // 0 = unlimited
  std::atomic<size_t> used_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<bool> refused_{false};
};

// Allocator for isolates created with Isolate::CreateParams.
class BoundedAllocator final : public v8::ArrayBuffer::Allocator {
 public:
  explicit BoundedAllocator(OffHeapBudget* budget) : budget_(budget) {}
  void* Allocate(size_t length) override;
  void* AllocateUninitialized(size_t length) override;
  void Free(void* data, size_t length) override;
  void* Reallocate(void* data, size_t old_length, size_t new_length) override;

 private:
  OffHeapBudget* budget_;
};

// V8 10.2's SnapshotCreator has no CreateParams and hard-wires its own calloc-based
// allocator object (a class with no data members). AdoptSnapshotAllocator re-points
// that object's vtable, by placement new of a member-less subclass, to one that counts
// against `budget`; ReleaseSnapshotAllocator forgets it once the creator is gone.
// Returns false (and changes nothing) when the running V8 is not the 10.2 this was
// verified for; the on-heap cap still applies then.
bool AdoptSnapshotAllocator(v8::Isolate* isolate, OffHeapBudget* budget);
void ReleaseSnapshotAllocator(v8::Isolate* isolate);

}  // namespace mv8
