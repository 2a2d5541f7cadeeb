// The raw-V8 yardstick of the benchmark: how fast this machine's V8 (the libnode the
// extension links) can do the two things an execution costs at the least, with no
// Python, no shim, no HTTP in the way.
//
//   fresh-isolate   new isolate + new context + compile and run a trivial script + dispose
//   snapshot-chain  SnapshotCreator restored from the previous blob + run a script that
//                   changes a global + CreateBlob; the next round restores that blob
//
// usage: v8-ceiling THREADS SECONDS
// Prints one JSON object per figure: {"kind": ..., "threads": N, "runs": N,
// "seconds": S, "rate_per_s": R, "cpu_ms_per_run": C}. Each thread runs its own chain.
// cpu_ms_per_run is the process's CPU time (user + system, every thread: V8's platform
// threads included) during the figure, divided by its runs.
//
// usage: v8-ceiling serve [CONSOLE_JS]
// Reads lines "KIND RUNS" (KIND: fresh-isolate or snapshot-chain) from stdin, runs that
// many steps on one thread (the chain carries on from one line to the next) and answers
// each with {"kind": ..., "runs": N, "cpu_ms_per_run": C}: a benchmark can then measure
// the ceiling in short slices interleaved with its own, on a machine whose load drifts.
// With CONSOLE_JS (the engine's rust/engine/cpp/js/console.js) a third kind,
// console-chain, is the same chain with the engine's console and timer globals installed
// in its first context (host functions that do nothing): what every snapshot of the
// engine carries, measured raw, so that cost can be told apart from the engine's own.
#include <libplatform/libplatform.h>
#include <sys/resource.h>
#include <v8.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// CPU seconds (user + system) of the whole process so far.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Compiles and runs `source` in `context`; false when it did not complete.
bool RunScript(v8::Isolate* isolate, v8::Local<v8::Context> context, const char* source) {
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::String> text;
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> result;
  return v8::String::NewFromUtf8(isolate, source).ToLocal(&text) &&
         v8::Script::Compile(context, text).ToLocal(&script) && script->Run(context).ToLocal(&result);
}

class Figure {
 public:
  virtual ~Figure() = default;
  virtual const char* name() const = 0;
  // One unit of work; false stops the thread (an error).
  virtual bool Step() = 0;
};

class FreshIsolate : public Figure {
 public:
  explicit FreshIsolate(v8::ArrayBuffer::Allocator* allocator) : allocator_(allocator) {}
  const char* name() const override { return "fresh-isolate"; }
  bool Step() override {
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = allocator_;
    v8::Isolate* isolate = v8::Isolate::New(params);
    bool ok;
    {
      v8::Isolate::Scope isolate_scope(isolate);
      v8::HandleScope handles(isolate);
      v8::Local<v8::Context> context = v8::Context::New(isolate);
      v8::Context::Scope context_scope(context);
      ok = RunScript(isolate, context, "JSON.stringify([1, 2].map(x => x * 2))");
    }
    isolate->Dispose();
    return ok;
  }

 private:
  v8::ArrayBuffer::Allocator* allocator_;
};

class SnapshotChain : public Figure {
 public:
  ~SnapshotChain() override { delete[] blob_.data; }
  const char* name() const override { return "snapshot-chain"; }
  bool Step() override {
    const bool first = blob_.data == nullptr;
    v8::SnapshotCreator creator(nullptr, first ? nullptr : &blob_);
    v8::Isolate* isolate = creator.GetIsolate();
    bool ok;
    {
      v8::HandleScope handles(isolate);
      v8::Local<v8::Context> context = v8::Context::New(isolate);
      v8::Context::Scope context_scope(context);
      ok = RunScript(isolate, context, first ? "var counter = 0; counter" : "counter += 1; String(counter)");
      creator.SetDefaultContext(context);
    }
    v8::StartupData next = creator.CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
    delete[] blob_.data;
    blob_ = next;
    return ok && next.data != nullptr;
  }

 private:
  v8::StartupData blob_{nullptr, 0};
};

// console-chain: the snapshot chain over a context holding what the engine installs in
// its base snapshot (rust/engine/cpp/host.cc): timer globals and console.js's console.
class ConsoleChain : public Figure {
 public:
  explicit ConsoleChain(std::string console_js) : console_js_(std::move(console_js)) {}
  ~ConsoleChain() override { delete[] blob_.data; }
  const char* name() const override { return "console-chain"; }
  bool Step() override {
    const bool first = blob_.data == nullptr;
    v8::SnapshotCreator creator(ExternalReferences(), first ? nullptr : &blob_);
    v8::Isolate* isolate = creator.GetIsolate();
    bool ok;
    {
      v8::HandleScope handles(isolate);
      v8::Local<v8::Context> context = v8::Context::New(isolate);
      v8::Context::Scope context_scope(context);
      ok = first ? Install(context) && RunScript(isolate, context, "var counter = 0; counter")
                 : RunScript(isolate, context, "counter += 1; String(counter)");
      creator.SetDefaultContext(context);
    }
    v8::StartupData next = creator.CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
    delete[] blob_.data;
    blob_ = next;
    return ok && next.data != nullptr;
  }

 private:
  static void Nothing(const v8::FunctionCallbackInfo<v8::Value>&) {}
  static const intptr_t* ExternalReferences() {
    static const intptr_t references[] = {reinterpret_cast<intptr_t>(&Nothing), 0};
    return references;
  }

  static bool Define(v8::Local<v8::Context> context, v8::Local<v8::Object> target, const char* name) {
    v8::Isolate* isolate = context->GetIsolate();
    v8::Local<v8::Function> fn;
    return v8::FunctionTemplate::New(isolate, Nothing)->GetFunction(context).ToLocal(&fn) &&
           target
               ->DefineOwnProperty(context, v8::String::NewFromUtf8(isolate, name).ToLocalChecked(), fn,
                                   v8::DontEnum)
               .FromMaybe(false);
  }

  bool Install(v8::Local<v8::Context> context) {
    v8::Isolate* isolate = context->GetIsolate();
    for (const char* name : {"setTimeout", "setInterval", "clearTimeout", "clearInterval", "queueMicrotask"}) {
      if (!Define(context, context->Global(), name)) return false;
    }
    v8::Local<v8::Object> native = v8::Object::New(isolate);
    for (const char* name : {"print", "promiseState", "proxyDetails"}) {
      if (!Define(context, native, name)) return false;
    }
    v8::TryCatch try_catch(isolate);
    v8::Local<v8::String> source;
    v8::Local<v8::Script> script;
    v8::Local<v8::Value> factory;
    v8::Local<v8::Value> argv[] = {native};
    return v8::String::NewFromUtf8(isolate, console_js_.data(), v8::NewStringType::kNormal,
                                   static_cast<int>(console_js_.size()))
               .ToLocal(&source) &&
           v8::Script::Compile(context, source).ToLocal(&script) && script->Run(context).ToLocal(&factory) &&
           factory->IsFunction() &&
           !factory.As<v8::Function>()->Call(context, v8::Undefined(isolate), 1, argv).IsEmpty();
  }

  std::string console_js_;
  v8::StartupData blob_{nullptr, 0};
};

template <typename Make>
void Measure(const char* kind, int threads, double seconds, Make make) {
  std::atomic<long> runs{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  const auto started = Clock::now();
  const double cpu_started = ProcessCpuSeconds();
  for (int i = 0; i < threads; i++) {
    workers.emplace_back([&] {
      std::unique_ptr<Figure> figure = make();
      while (Clock::now() < deadline) {
        if (!figure->Step()) {
          failed = true;
          return;
        }
        runs++;
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  const double cpu = ProcessCpuSeconds() - cpu_started;
  const long total = runs.load();
  std::printf(
      "{\"kind\": \"%s\", \"threads\": %d, \"runs\": %ld, \"seconds\": %.3f, \"rate_per_s\": %.1f, "
      "\"cpu_ms_per_run\": %.3f%s}\n",
      kind, threads, total, elapsed, total / elapsed, total > 0 ? cpu * 1e3 / total : 0.0,
      failed ? ", \"error\": \"a run failed\"" : "");
  std::fflush(stdout);
}

// The "serve" mode (see the top of the file). `console_js` empty: no console-chain.
int Serve(v8::ArrayBuffer::Allocator* allocator, const std::string& console_js) {
  FreshIsolate fresh(allocator);
  SnapshotChain chain;
  std::unique_ptr<ConsoleChain> console_chain;
  if (!console_js.empty()) console_chain = std::make_unique<ConsoleChain>(console_js);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string kind;
    long runs = 0;
    words >> kind >> runs;
    Figure* figure = kind == fresh.name()                        ? static_cast<Figure*>(&fresh)
                     : kind == chain.name()                        ? static_cast<Figure*>(&chain)
                     : console_chain && kind == console_chain->name() ? console_chain.get()
                                                                      : nullptr;
    if (figure == nullptr || runs < 1) {
      std::printf("{\"error\": \"expected KIND RUNS\"}\n");
      std::fflush(stdout);
      continue;
    }
    bool ok = true;
    const double cpu_started = ProcessCpuSeconds();
    for (long i = 0; i < runs && ok; i++) ok = figure->Step();
    const double cpu = ProcessCpuSeconds() - cpu_started;
    std::printf("{\"kind\": \"%s\", \"runs\": %ld, \"cpu_ms_per_run\": %.3f%s}\n", figure->name(), runs,
                cpu * 1e3 / runs, ok ? "" : ", \"error\": \"a run failed\"");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool serve = (argc == 2 || argc == 3) && std::string(argv[1]) == "serve";
  std::string console_js;
  if (serve && argc == 3) {
    std::ifstream file(argv[2], std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    console_js = text.str();
    if (!file || console_js.empty()) {
      std::fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[2]);
      return 2;
    }
  }
  const int threads = serve ? 1 : argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = serve ? 1.0 : argc > 2 ? std::atof(argv[2]) : 3.0;
  if (threads < 1 || seconds <= 0) {
    std::fprintf(stderr, "usage: %s THREADS SECONDS | %s serve [CONSOLE_JS]\n", argv[0], argv[0]);
    return 2;
  }
  std::unique_ptr<v8::Platform> platform = v8::platform::NewDefaultPlatform();
  v8::V8::InitializePlatform(platform.get());
  v8::V8::Initialize();
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator(v8::ArrayBuffer::Allocator::NewDefaultAllocator());
  int status = 0;
  if (serve) {
    status = Serve(allocator.get(), console_js);
  } else {
    Measure("fresh-isolate", threads, seconds,
            [&] { return std::unique_ptr<Figure>(new FreshIsolate(allocator.get())); });
    Measure("snapshot-chain", threads, seconds, [] { return std::unique_ptr<Figure>(new SnapshotChain()); });
  }
  v8::V8::Dispose();
  v8::V8::DisposePlatform();
  return status;
}
