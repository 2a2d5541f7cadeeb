#include "plain_isolate.h"

#include "host.h"
#include "stack_trace_limit.h"

namespace mv8 {

std::unique_ptr<PlainIsolate> PlainIsolate::New(V8Process* process, const v8::StartupData* blob,
                                                uint64_t heap_limit_bytes, std::string* error) {
  std::unique_ptr<PlainIsolate> plain(new PlainIsolate(heap_limit_bytes));
  plain->blob_ = *blob;
  v8::Isolate::CreateParams params;
  params.snapshot_blob = &plain->blob_;
  params.external_references = host::ExternalReferences();
  params.array_buffer_allocator = &plain->allocator_;
  plain->isolate_ = process->NewIsolate(&params, heap_limit_bytes);
  if (plain->isolate_ == nullptr) {
    *error = "V8 could not create an isolate";
    return nullptr;
  }
  // Armed before the context is made: restoring a large heap may already reach the cap. When it
  // does, the guard stays hit and the run it is used for ends as over its heap limit.
  plain->hooks_.Arm(plain->isolate_);
  v8::Isolate::Scope isolate_scope(plain->isolate_);
  v8::HandleScope handle_scope(plain->isolate_);
  v8::Local<v8::Context> context = v8::Context::New(plain->isolate_);
  if (context.IsEmpty()) {
    *error = "V8 could not create the context";
    return nullptr;
  }
  {
    v8::Context::Scope context_scope(context);
    StackTraceLimit::Install(context);
  }
  plain->context_.Reset(plain->isolate_, context);
  return plain;
}

PlainIsolate::~PlainIsolate() {
  if (isolate_ == nullptr) return;
  {
    v8::Isolate::Scope isolate_scope(isolate_);
    context_.Reset();
    hooks_.Disarm();
  }
  isolate_->Dispose();
}

}  // namespace mv8
