// Compile-only probe of the TensorRT builder calls that export/trt.py (`build_engine`) makes through the Python API,
// whose bindings mirror these C++ methods one to one (create_network <-> createNetworkV2, set_flag <-> setFlag, ...).
// scripts/check_trt.sh compiles it against every TensorRT header set it finds; it is never linked or run, and the
// product does not contain it. It records where TensorRT 10 and 11 differ for engine building (docs/jetson.md):
// 11.x removed BuilderFlag::kFP16/kINT8/kBF16 and the INT8 calibrator (NvInfer.h of 11.1): networks are strongly
// typed, so an fp16 engine needs an fp16 ONNX graph; kTF32 and the timing cache remain.
#include <NvInfer.h>
#include <NvInferVersion.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#if __has_include(<NvOnnxParser.h>)  // not in every header set (10.3's lives in the parsers/onnx submodule)
#include <NvOnnxParser.h>
#define EDGEACT_CHECK_ONNX_PARSER 1
#endif

#if NV_TENSORRT_MAJOR < 10
#error "edgeact's TensorRT code is written for TensorRT 10 and 11"
#endif

namespace edgeact::trt_check {

// export/trt.py build_engine, step for step. Returns the serialized engine or nullptr.
nvinfer1::IHostMemory* build_engine(nvinfer1::IBuilder& builder, nvinfer1::ILogger& logger, const void* onnx,
                                    std::size_t onnx_size, bool fp16, std::size_t workspace_bytes,
                                    const void* cache, std::size_t cache_size, std::string& error) {
  // Explicit batch is the only mode from TensorRT 10 on (the flag is deprecated there), so no flag is passed.
  std::unique_ptr<nvinfer1::INetworkDefinition> network(builder.createNetworkV2(0U));
  if (!network) return nullptr;
#ifdef EDGEACT_CHECK_ONNX_PARSER
  std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger));
  if (!parser->parse(onnx, onnx_size)) {
    for (int32_t i = 0; i < parser->getNbErrors(); ++i) error += parser->getError(i)->desc();
    return nullptr;
  }
#else
  (void)logger, (void)onnx, (void)onnx_size, (void)error;
#endif
  std::unique_ptr<nvinfer1::IBuilderConfig> config(builder.createBuilderConfig());
  config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, workspace_bytes);
#if NV_TENSORRT_MAJOR >= 11
  // No precision flags: the engine computes in the types of the ONNX graph (strongly typed network).
  if (fp16) error = "TensorRT 11: --fp16 needs an fp16 ONNX graph; the builder has no FP16 flag";
#else
  if (fp16) config->setFlag(nvinfer1::BuilderFlag::kFP16);
#endif
  config->clearFlag(nvinfer1::BuilderFlag::kTF32);  // fp32 means fp32, not TF32 matmuls
  std::unique_ptr<nvinfer1::ITimingCache> timing(config->createTimingCache(cache, cache_size));
  config->setTimingCache(*timing, false);
  nvinfer1::IHostMemory* engine = builder.buildSerializedNetwork(*network, *config);
  if (engine != nullptr) {
    std::unique_ptr<nvinfer1::IHostMemory> saved(config->getTimingCache()->serialize());
    (void)saved;
  }
  return engine;
}

}  // namespace edgeact::trt_check
