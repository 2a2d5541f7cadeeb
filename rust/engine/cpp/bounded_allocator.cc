#include "bounded_allocator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

namespace mv8 {

bool OffHeapBudget::Reserve(size_t bytes) {
  size_t used = used_.load();
  for (;;) {
    size_t next = used + bytes;
    if (limit_ != 0 && (next < used || next > limit_)) {
      refused_.store(true);
      return false;
    }
    if (used_.compare_exchange_weak(used, next)) break;
  }
  size_t seen = peak_.load();
  size_t now = used + bytes;
  while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
  }
  return true;
}

void OffHeapBudget::Release(size_t bytes) { used_.fetch_sub(bytes); }

namespace {

void* CountedAlloc(OffHeapBudget* budget, size_t length, bool zero) {
  if (!budget->Reserve(length)) return nullptr;
  void* p = zero ? std::calloc(length ? length : 1, 1) : std::malloc(length ? length : 1);
  if (p == nullptr) budget->Release(length);
  return p;
}

void CountedFree(OffHeapBudget* budget, void* data, size_t length) {
  std::free(data);
  budget->Release(length);
}

void* CountedRealloc(OffHeapBudget* budget, void* data, size_t old_length, size_t new_length) {
  if (new_length > old_length && !budget->Reserve(new_length - old_length)) return nullptr;
  void* p = std::realloc(data, new_length ? new_length : 1);
  if (p == nullptr) {
    if (new_length > old_length) budget->Release(new_length - old_length);
    return nullptr;
  }
  if (new_length > old_length) {
    std::memset(static_cast<char*>(p) + old_length, 0, new_length - old_length);
  } else {
    budget->Release(old_length - new_length);
  }
  return p;
}

// Budgets of adopted SnapshotCreator allocators, by allocator address.
std::mutex g_adopted_mu;
std::unordered_map<const void*, OffHeapBudget*>& Adopted() {
  static auto* map = new std::unordered_map<const void*, OffHeapBudget*>();
  return *map;
}

OffHeapBudget* BudgetOf(const void* allocator) {
  std::lock_guard<std::mutex> lock(g_adopted_mu);
  auto it = Adopted().find(allocator);
  return it == Adopted().end() ? nullptr : it->second;
}

// Same layout as V8's internal allocator (only a vptr); state lives in Adopted().
class AdoptedAllocator final : public v8::ArrayBuffer::Allocator {
 public:
  void* Allocate(size_t length) override {
    OffHeapBudget* b = BudgetOf(this);
    return b ? CountedAlloc(b, length, true) : std::calloc(length ? length : 1, 1);
  }
  void* AllocateUninitialized(size_t length) override {
    OffHeapBudget* b = BudgetOf(this);
    return b ? CountedAlloc(b, length, false) : std::malloc(length ? length : 1);
  }
  void Free(void* data, size_t length) override {
    OffHeapBudget* b = BudgetOf(this);
    if (b) {
      CountedFree(b, data, length);
    } else {
      std::free(data);
    }
  }
  void* Reallocate(void* data, size_t old_length, size_t new_length) override {
    OffHeapBudget* b = BudgetOf(this);
    if (b) return CountedRealloc(b, data, old_length, new_length);
    void* p = std::realloc(data, new_length);
    if (p && new_length > old_length) std::memset(static_cast<char*>(p) + old_length, 0, new_length - old_length);
    return p;
  }
};
static_assert(sizeof(AdoptedAllocator) == sizeof(void*), "must match V8's member-less allocator");

}  // namespace

void* BoundedAllocator::Allocate(size_t length) { return CountedAlloc(budget_, length, true); }
void* BoundedAllocator::AllocateUninitialized(size_t length) { return CountedAlloc(budget_, length, false); }
void BoundedAllocator::Free(void* data, size_t length) { CountedFree(budget_, data, length); }
void* BoundedAllocator::Reallocate(void* data, size_t old_length, size_t new_length) {
  return CountedRealloc(budget_, data, old_length, new_length);
}

bool AdoptSnapshotAllocator(v8::Isolate* isolate, OffHeapBudget* budget) {
  static const bool verified_v8 = std::strncmp(v8::V8::GetVersion(), "10.2.", 5) == 0;
  if (!verified_v8) return false;
  void* allocator = isolate->GetArrayBufferAllocator();
  if (allocator == nullptr) return false;
  {
    std::lock_guard<std::mutex> lock(g_adopted_mu);
    Adopted()[allocator] = budget;
  }
  new (allocator) AdoptedAllocator();
  return true;
}

void ReleaseSnapshotAllocator(v8::Isolate* isolate) {
  std::lock_guard<std::mutex> lock(g_adopted_mu);
  Adopted().erase(isolate->GetArrayBufferAllocator());
}

}  // namespace mv8
