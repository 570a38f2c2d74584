// Internal: the backend factories behind Model::load (not part of the public API).
#pragma once

#include <memory>
#include <string>

#include "edgeact/runtime.h"

namespace edgeact::rt::detail {

std::shared_ptr<const Model> load_onnxruntime(const std::string& path, const ModelSpec& spec,
                                              const ModelParams& params);
#ifdef EDGEACT_WITH_TENSORRT
std::shared_ptr<const Model> load_tensorrt(const std::string& path, const ModelSpec& spec,
                                           const ModelParams& params);
#endif

// Runs `runs` inferences on zeroed inputs; throws std::runtime_error naming `what` when one fails.
void warm_up(InferContext& ctx, const ModelSpec& spec, int runs, const std::string& what);

}  // namespace edgeact::rt::detail
