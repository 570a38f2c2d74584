// The ONNX Runtime library as the runtime loads it: init_onnxruntime() dlopens the libonnxruntime named by
// EDGEACT_ORT_LIBRARY (the aarch64 one from the onnxruntime wheel in scripts/test_aarch64.sh), then, when
// EDGEACT_ORT_TEST_MODEL names an ONNX file, one session runs it on zero inputs through the C++ API the backend
// uses. Built only when CMake gets -DEDGEACT_TEST_ORT_LIBRARY=<path> (the plain ctest run links no ONNX Runtime).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "edgeact/runtime.h"
#include "harness.h"

using namespace edgeact::rt;

namespace {
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}
}  // namespace

TEST(init_onnxruntime_loads_the_library) {
  const std::string lib = env_or_empty("EDGEACT_ORT_LIBRARY");
  CHECK(!lib.empty());
  CHECK_THROWS(init_onnxruntime("/nonexistent/libonnxruntime.so"));
  init_onnxruntime(lib);
  CHECK(onnxruntime_ready());
  std::printf("  loaded %s\n", lib.c_str());
}

TEST(a_graph_runs_on_zero_inputs) {
  const std::string model = env_or_empty("EDGEACT_ORT_TEST_MODEL");
  if (model.empty()) {
    std::printf("  no EDGEACT_ORT_TEST_MODEL: session not tested\n");
    return;
  }
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "test_ort_library");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(1);
  Ort::Session session(env, model.c_str(), options);
  Ort::AllocatorWithDefaultOptions alloc;
  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::AllocatedStringPtr> names;
  std::vector<const char*> in_names, out_names;
  std::vector<Ort::Value> inputs;
  std::vector<std::vector<uint8_t>> storage;
  for (size_t i = 0; i < session.GetInputCount(); ++i) {
    names.push_back(session.GetInputNameAllocated(i, alloc));
    in_names.push_back(names.back().get());
    const Ort::TypeInfo type_info = session.GetInputTypeInfo(i);  // owns what `info` views
    const auto info = type_info.GetTensorTypeAndShapeInfo();
    std::vector<int64_t> shape = info.GetShape();
    size_t n = 1;
    for (int64_t& d : shape) n *= static_cast<size_t>(d = d < 0 ? 1 : d);
    const ONNXTensorElementDataType type = info.GetElementType();
    const size_t width = type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ? 1 : 4;
    CHECK(type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    storage.emplace_back(n * width, 0);
    inputs.push_back(Ort::Value::CreateTensor(cpu, storage.back().data(), n * width, shape.data(), shape.size(),
                                              type));
  }
  for (size_t i = 0; i < session.GetOutputCount(); ++i) {
    names.push_back(session.GetOutputNameAllocated(i, alloc));
    out_names.push_back(names.back().get());
  }
  auto outputs = session.Run(Ort::RunOptions{nullptr}, in_names.data(), inputs.data(), inputs.size(),
                             out_names.data(), out_names.size());
  CHECK(!outputs.empty());
  const auto out_info = outputs[0].GetTensorTypeAndShapeInfo();
  CHECK(out_info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  const float* y = outputs[0].GetTensorData<float>();
  bool finite = out_info.GetElementCount() > 0;
  for (size_t i = 0; i < out_info.GetElementCount(); ++i) finite = finite && std::isfinite(y[i]);
  CHECK(finite);
  std::printf("  %s: %zu inputs, output of %zu floats, y[0] = %g\n", model.c_str(), inputs.size(),
              out_info.GetElementCount(), static_cast<double>(y[0]));
}

TEST_MAIN()
