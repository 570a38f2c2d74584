// ONNX Runtime backend. The library is not linked: init_onnxruntime() dlopens the one shipped in the onnxruntime
// wheel and initialises the C++ API from OrtGetApiBase (ORT_API_MANUAL_INIT). Each context owns its input and
// output buffers, wrapped once in Ort::Values and bound with an IoBinding, so a tick only calls RunWithBinding
// through the C API (a status return, no exception).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "backends.h"

namespace edgeact::rt {

namespace {
std::mutex g_init_mutex;
std::atomic<bool> g_ready{false};

Ort::Env& ort_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "edgeact");
  return env;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A graph dimension matches when equal or symbolic (-1).
bool dims_match(const std::vector<int64_t>& graph, const std::vector<int64_t>& want) {
  if (graph.size() != want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (graph[i] >= 0 && graph[i] != want[i]) return false;
  return true;
}
}  // namespace

void init_onnxruntime(const std::string& library_path) {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_ready.load()) return;
  void* lib = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr)
    throw std::runtime_error("cannot load the ONNX Runtime library " + library_path + ": " + dlerror());
  using GetApiBase = const OrtApiBase* (*)();
  auto get = reinterpret_cast<GetApiBase>(dlsym(lib, "OrtGetApiBase"));
  if (get == nullptr) throw std::runtime_error(library_path + " has no OrtGetApiBase symbol");
  const OrtApiBase* base = get();
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr)
    throw std::runtime_error("the ONNX Runtime library " + library_path + " (version " +
                             base->GetVersionString() + ") does not provide C API version " +
                             std::to_string(ORT_API_VERSION));
  Ort::InitApi(api);
  g_ready.store(true);
  log_message(LogLevel::debug,
              std::string("ONNX Runtime ") + base->GetVersionString() + " loaded from " + library_path);
}

bool onnxruntime_ready() noexcept { return g_ready.load(); }

namespace {

class OrtModel;

class OrtContext final : public InferContext {
 public:
  OrtContext(const OrtModel& model, Ort::Session& session, const ModelSpec& spec);
  uint8_t* image_input(int camera) noexcept override { return images_[camera].data(); }
  float* vector_input(int i) noexcept override { return vectors_[i].data(); }
  const float* output() const noexcept override { return output_.data(); }
  Status run() noexcept override {
    OrtStatus* st = Ort::GetApi().RunWithBinding(session_, run_options_, binding_);
    if (st == nullptr) return Status::ok;
    Ort::GetApi().ReleaseStatus(st);
    return Status::backend_error;
  }
  std::string run_message() {  // the error text of one run, for warm-up at load time
    OrtStatus* st = Ort::GetApi().RunWithBinding(session_, run_options_, binding_);
    if (st == nullptr) return "";
    std::string msg = Ort::GetApi().GetErrorMessage(st);
    Ort::GetApi().ReleaseStatus(st);
    return msg.empty() ? "unknown error" : msg;
  }

 private:
  Ort::Session& session_;
  Ort::MemoryInfo mem_;
  Ort::RunOptions run_options_;
  std::vector<std::vector<uint8_t>> images_;
  std::vector<std::vector<float>> vectors_;
  std::vector<float> output_;
  std::vector<Ort::Value> values_;  // the inputs, then the output, over the buffers above
  Ort::IoBinding binding_;
};

class OrtModel final : public Model {
 public:
  OrtModel(const std::string& path, const ModelSpec& spec, const ModelParams& params) : Model(spec), path_(path) {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(params.intra_op_threads);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    try {
      for (const auto& [key, value] : params.ort_config) so.AddConfigEntry(key.c_str(), value.c_str());
      session_ = std::make_unique<Ort::Session>(ort_env(), path.c_str(), so);
    } catch (const Ort::Exception& e) {
      throw std::runtime_error("cannot load ONNX model " + path + ": " + e.what());
    }
    check_io();
  }
  BackendKind backend() const noexcept override { return BackendKind::onnxruntime; }
  std::unique_ptr<InferContext> create_context() const override {
    try {
      return std::make_unique<OrtContext>(*this, *session_, spec_);
    } catch (const Ort::Exception& e) {
      throw std::runtime_error("cannot bind the inputs of " + path_ + ": " + e.what());
    }
  }
  const std::string& path() const { return path_; }

 private:
  void check_tensor(const Ort::TypeInfo& info, const std::string& name, ONNXTensorElementDataType type,
                    const char* type_name, const std::vector<int64_t>& want) const {
    if (info.GetONNXType() != ONNX_TYPE_TENSOR)
      throw std::runtime_error(path_ + ": graph value '" + name + "' is not a tensor");
    auto t = info.GetTensorTypeAndShapeInfo();
    if (t.GetElementType() != type)
      throw std::runtime_error(path_ + ": graph value '" + name + "' must be " + type_name);
    const auto shape = t.GetShape();
    if (!dims_match(shape, want))
      throw std::runtime_error(path_ + ": graph value '" + name + "' has shape " + shape_str(shape) +
                               ", policy.json says " + shape_str(want));
  }
  void check_io() const {
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<std::string> inputs, outputs;
    for (size_t i = 0; i < session_->GetInputCount(); ++i)
      inputs.emplace_back(session_->GetInputNameAllocated(i, alloc).get());
    for (size_t i = 0; i < session_->GetOutputCount(); ++i)
      outputs.emplace_back(session_->GetOutputNameAllocated(i, alloc).get());
    auto find = [&](const std::vector<std::string>& names, const std::string& n, const char* what) {
      for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == n) return i;
      throw std::runtime_error(path_ + ": the graph has no " + what + " named '" + n +
                               "' (policy.json inputs/outputs)");
    };
    const size_t expected_inputs = spec_.cameras.size() + spec_.vectors.size();
    if (inputs.size() != expected_inputs)
      throw std::runtime_error(path_ + ": the graph has " + std::to_string(inputs.size()) +
                               " inputs, policy.json describes " + std::to_string(expected_inputs));
    for (const auto& cam : spec_.cameras) {
      std::vector<int64_t> want = cam.layout == Layout::nhwc
                                      ? std::vector<int64_t>{1, cam.height, cam.width, cam.channels}
                                      : std::vector<int64_t>{1, cam.channels, cam.height, cam.width};
      size_t i = find(inputs, cam.input_name, "input");
      check_tensor(session_->GetInputTypeInfo(i), cam.input_name, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, "uint8",
                   want);
    }
    for (const auto& vec : spec_.vectors) {
      size_t i = find(inputs, vec.input_name, "input");
      check_tensor(session_->GetInputTypeInfo(i), vec.input_name, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "float32",
                   {1, vec.dim});
    }
    size_t o = find(outputs, spec_.output_name, "output");
    check_tensor(session_->GetOutputTypeInfo(o), spec_.output_name, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "float32",
                 {1, spec_.chunk_size, spec_.action_dim});
  }

  std::string path_;
  std::unique_ptr<Ort::Session> session_;
};

OrtContext::OrtContext(const OrtModel&, Ort::Session& session, const ModelSpec& spec)
    : session_(session),
      mem_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)),
      binding_(session) {
  for (const auto& cam : spec.cameras) {
    images_.emplace_back(static_cast<size_t>(cam.height) * cam.width * cam.channels, 0);
    const std::vector<int64_t> shape = cam.layout == Layout::nhwc
                                           ? std::vector<int64_t>{1, cam.height, cam.width, cam.channels}
                                           : std::vector<int64_t>{1, cam.channels, cam.height, cam.width};
    values_.push_back(Ort::Value::CreateTensor<uint8_t>(mem_, images_.back().data(), images_.back().size(),
                                                        shape.data(), shape.size()));
    binding_.BindInput(cam.input_name.c_str(), values_.back());
  }
  for (const auto& vec : spec.vectors) {
    vectors_.emplace_back(static_cast<size_t>(vec.dim), 0.0f);
    const int64_t shape[2] = {1, vec.dim};
    auto& buf = vectors_.back();
    values_.push_back(Ort::Value::CreateTensor<float>(mem_, buf.data(), buf.size(), shape, 2));
    binding_.BindInput(vec.input_name.c_str(), values_.back());
  }
  output_.assign(static_cast<size_t>(spec.chunk_size) * spec.action_dim, 0.0f);
  const int64_t oshape[3] = {1, spec.chunk_size, spec.action_dim};
  values_.push_back(Ort::Value::CreateTensor<float>(mem_, output_.data(), output_.size(), oshape, 3));
  binding_.BindOutput(spec.output_name.c_str(), values_.back());
}

}  // namespace

namespace detail {

void warm_up(InferContext& ctx, const ModelSpec& spec, int runs, const std::string& what) {
  for (size_t c = 0; c < spec.cameras.size(); ++c) {
    const auto& cam = spec.cameras[c];
    std::memset(ctx.image_input(static_cast<int>(c)), 0, static_cast<size_t>(cam.height) * cam.width * cam.channels);
  }
  for (size_t v = 0; v < spec.vectors.size(); ++v)
    std::memset(ctx.vector_input(static_cast<int>(v)), 0, sizeof(float) * spec.vectors[v].dim);
  for (int i = 0; i < runs; ++i) {
    if (auto* ort = dynamic_cast<OrtContext*>(&ctx)) {
      const std::string msg = ort->run_message();
      if (!msg.empty()) throw std::runtime_error("warm-up inference of " + what + " failed: " + msg);
    } else if (ctx.run() != Status::ok) {
      throw std::runtime_error("warm-up inference of " + what + " failed");
    }
  }
}

constexpr int kMmapThresholdAfterLoad = 32 * 1024 * 1024;  // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit

std::shared_ptr<const Model> load_onnxruntime(const std::string& path, const ModelSpec& spec,
                                              const ModelParams& params) {
  if (!onnxruntime_ready())
    throw std::runtime_error("ONNX Runtime is not initialised: call init_onnxruntime(library_path) first");
#ifdef __GLIBC__
  // During the load, blocks over 128 KiB are mmapped and unmapped when freed, so the parsed protobuf's buffers do
  // not pile up in the heap next to the initializers (peak). Not when the user set the threshold (GLIBC_TUNABLES).
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const bool set_threshold =
      params.release_load_memory && (tunables == nullptr || std::strstr(tunables, "mmap_threshold") == nullptr);
  if (set_threshold) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  std::shared_ptr<OrtModel> model;
  try {
    model = std::make_shared<OrtModel>(path, spec, params);
    auto ctx = model->create_context();
    warm_up(*ctx, spec, params.warmup_runs, path);
  } catch (...) {
#ifdef __GLIBC__
    if (set_threshold) mallopt(M_MMAP_THRESHOLD, kMmapThresholdAfterLoad);
#endif
    throw;
  }
#ifdef __GLIBC__
  // Afterwards: the largest threshold glibc's own dynamic adjustment would reach, and the freed heap (the parse
  // buffers that were not mmapped) handed back to the OS. Measured in docs/runtime.md ("Memory").
  if (set_threshold) mallopt(M_MMAP_THRESHOLD, kMmapThresholdAfterLoad);
  if (params.release_load_memory) malloc_trim(0);
#endif
  return model;
}

}  // namespace detail
}  // namespace edgeact::rt
