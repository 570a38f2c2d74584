// TensorRT 10 backend (compiled only with EDGEACT_WITH_TENSORRT; see CMakeLists.txt). Same interface as the ONNX
// Runtime backend: the engine is deserialised once (immutable Model), each context owns an IExecutionContext, a
// CUDA stream, pinned host buffers the session writes into, and device buffers bound once with setTensorAddress.
// run() = async H2D copies -> enqueueV3 -> D2H copy -> stream synchronise, returning a status (no exception).
// NOT compiled or run on the development machine (no TensorRT, no GPU): docs/runtime.md says so.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "backends.h"

namespace edgeact::rt {
namespace {

class TrtLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    // Only load-time messages reach here in practice; inference errors are reported through statuses.
    if (severity <= Severity::kWARNING)
      log_message(severity <= Severity::kERROR ? LogLevel::error : LogLevel::warning, std::string("TensorRT: ") + msg);
  }
};
TrtLogger& trt_logger() {
  static TrtLogger logger;
  return logger;
}

void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw std::runtime_error(what + ": " + cudaGetErrorString(err));
}

nvinfer1::Dims dims_of(const std::vector<int64_t>& shape) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
  return d;
}

struct Binding {
  std::string name;
  std::vector<int64_t> shape;
  size_t bytes = 0;
  bool input = true;
};

class TrtModel;

class TrtContext final : public InferContext {
 public:
  TrtContext(nvinfer1::ICudaEngine& engine, const std::vector<Binding>& bindings, size_t n_cameras,
             const std::string& path)
      : bindings_(bindings), n_cameras_(n_cameras) {
    ctx_ = engine.createExecutionContext();
    if (ctx_ == nullptr) throw std::runtime_error(path + ": createExecutionContext failed");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), path + ": cudaStreamCreate");
    for (const auto& b : bindings_) {
      void* host = nullptr;
      void* dev = nullptr;
      cuda_check(cudaMallocHost(&host, b.bytes), path + ": cudaMallocHost");  // pinned: async copies
      host_.push_back(host);
      cuda_check(cudaMalloc(&dev, b.bytes), path + ": cudaMalloc");
      dev_.push_back(dev);
      if (b.input && !ctx_->setInputShape(b.name.c_str(), dims_of(b.shape)))
        throw std::runtime_error(path + ": setInputShape failed for '" + b.name + "'");
      if (!ctx_->setTensorAddress(b.name.c_str(), dev))
        throw std::runtime_error(path + ": setTensorAddress failed for '" + b.name + "'");
    }
  }
  ~TrtContext() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (void* p : host_) cudaFreeHost(p);
    for (void* p : dev_) cudaFree(p);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    delete ctx_;  // TensorRT 10: objects are released with delete
  }
  // Bindings are ordered: cameras, then the vectors, then the output (see TrtModel::collect_bindings).
  uint8_t* image_input(int camera) noexcept override { return static_cast<uint8_t*>(host_[camera]); }
  float* vector_input(int i) noexcept override { return static_cast<float*>(host_[n_cameras_ + i]); }
  const float* output() const noexcept override { return static_cast<const float*>(host_.back()); }
  Status run() noexcept override {
    for (size_t i = 0; i + 1 < bindings_.size(); ++i)
      if (cudaMemcpyAsync(dev_[i], host_[i], bindings_[i].bytes, cudaMemcpyHostToDevice, stream_) != cudaSuccess)
        return Status::backend_error;
    if (!ctx_->enqueueV3(stream_)) return Status::backend_error;
    if (cudaMemcpyAsync(host_.back(), dev_.back(), bindings_.back().bytes, cudaMemcpyDeviceToHost, stream_) !=
        cudaSuccess)
      return Status::backend_error;
    return cudaStreamSynchronize(stream_) == cudaSuccess ? Status::ok : Status::backend_error;
  }

 private:
  std::vector<Binding> bindings_;
  size_t n_cameras_;
  nvinfer1::IExecutionContext* ctx_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::vector<void*> host_, dev_;
};

class TrtModel final : public Model {
 public:
  TrtModel(const std::string& path, const ModelSpec& spec) : Model(spec), path_(path) {
    std::ifstream f(path, std::ios::binary);
    const std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (blob.empty()) throw std::runtime_error(path + ": empty or unreadable engine file");
    runtime_ = nvinfer1::createInferRuntime(trt_logger());
    if (runtime_ == nullptr) throw std::runtime_error("createInferRuntime failed");
    engine_ = runtime_->deserializeCudaEngine(blob.data(), blob.size());
    if (engine_ == nullptr)
      throw std::runtime_error(path + ": cannot deserialise the engine (built for another GPU or TensorRT version?)");
    collect_bindings();
  }
  ~TrtModel() override {
    delete engine_;
    delete runtime_;
  }
  BackendKind backend() const noexcept override { return BackendKind::tensorrt; }
  std::unique_ptr<InferContext> create_context() const override {
    return std::make_unique<TrtContext>(*engine_, bindings_, spec_.cameras.size(), path_);
  }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, nvinfer1::DataType type, bool input) {
    const char* n = name.c_str();
    bool found = false;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) found |= name == engine_->getIOTensorName(i);
    if (!found) throw std::runtime_error(path_ + ": the engine has no tensor named '" + name + "'");
    const bool is_input = engine_->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT;
    if (is_input != input || engine_->getTensorDataType(n) != type)
      throw std::runtime_error(path_ + ": engine tensor '" + name + "' has the wrong direction or data type");
    const nvinfer1::Dims d = engine_->getTensorShape(n);
    bool ok = d.nbDims == static_cast<int32_t>(shape.size());
    for (int32_t i = 0; ok && i < d.nbDims; ++i) ok = d.d[i] < 0 || d.d[i] == shape[i];
    if (!ok) throw std::runtime_error(path_ + ": engine tensor '" + name + "' shape differs from policy.json");
    size_t elems = 1;
    for (int64_t v : shape) elems *= static_cast<size_t>(v);
    bindings_.push_back(Binding{name, shape, elems * (type == nvinfer1::DataType::kUINT8 ? 1 : 4), input});
  }
  void collect_bindings() {
    for (const auto& c : spec_.cameras)
      add(c.input_name,
          c.layout == Layout::nhwc ? std::vector<int64_t>{1, c.height, c.width, c.channels}
                                   : std::vector<int64_t>{1, c.channels, c.height, c.width},
          nvinfer1::DataType::kUINT8, true);
    for (const auto& v : spec_.vectors) add(v.input_name, {1, v.dim}, nvinfer1::DataType::kFLOAT, true);
    add(spec_.output_name, {1, spec_.chunk_size, spec_.action_dim}, nvinfer1::DataType::kFLOAT, false);
    const size_t expected = bindings_.size();
    if (static_cast<size_t>(engine_->getNbIOTensors()) != expected)
      throw std::runtime_error(path_ + ": the engine has " + std::to_string(engine_->getNbIOTensors()) +
                               " I/O tensors, policy.json describes " + std::to_string(expected));
  }

  std::string path_;
  nvinfer1::IRuntime* runtime_ = nullptr;
  nvinfer1::ICudaEngine* engine_ = nullptr;
  std::vector<Binding> bindings_;
};

}  // namespace

namespace detail {
std::shared_ptr<const Model> load_tensorrt(const std::string& path, const ModelSpec& spec, const ModelParams& params) {
  auto model = std::make_shared<TrtModel>(path, spec);
  auto ctx = model->create_context();
  warm_up(*ctx, spec, params.warmup_runs, path);
  return model;
}
}  // namespace detail
}  // namespace edgeact::rt
