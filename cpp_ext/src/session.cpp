// Model loading (backend dispatch, spec validation) and Session: one episode's pre -> infer -> ensemble -> post.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "backends.h"

namespace edgeact::rt {

ModelParams default_model_params() { return ModelParams{}; }

bool tensorrt_compiled() noexcept {
#ifdef EDGEACT_WITH_TENSORRT
  return true;
#else
  return false;
#endif
}

void validate(const ModelSpec& spec) {
  auto bad = [](const std::string& msg) { throw std::invalid_argument("model spec: " + msg); };
  if (spec.chunk_size < 1) bad("chunk_size must be >= 1, got " + std::to_string(spec.chunk_size));
  if (spec.action_dim < 1) bad("action_dim must be >= 1, got " + std::to_string(spec.action_dim));
  if (spec.output_name.empty()) bad("output_name is empty");
  if (spec.cameras.empty() && spec.vectors.empty()) bad("the model needs at least one input (a camera or a vector)");
  std::vector<std::string> names;
  for (const auto& c : spec.cameras) {
    if (c.height < 1 || c.width < 1 || c.channels < 1)
      bad("camera '" + c.name + "' has size " + std::to_string(c.height) + "x" + std::to_string(c.width) + "x" +
          std::to_string(c.channels));
    if (c.input_name.empty()) bad("camera '" + c.name + "' has no input_name");
    names.push_back(c.input_name);
  }
  for (size_t i = 0; i < spec.vectors.size(); ++i) {
    const auto& v = spec.vectors[i];
    if (v.input_name.empty()) bad("vectors[" + std::to_string(i) + "] has no input_name");
    if (v.dim < 1) bad("vector '" + v.input_name + "' dim must be >= 1, got " + std::to_string(v.dim));
    names.push_back(v.input_name);
  }
  for (size_t i = 0; i < names.size(); ++i)
    for (size_t j = i + 1; j < names.size(); ++j)
      if (names[i] == names[j]) bad("input_name '" + names[i] + "' is used twice");
  if (std::find(names.begin(), names.end(), spec.output_name) != names.end())
    bad("output_name '" + spec.output_name + "' is also an input name");
}

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelSpec& spec,
                                         const ModelParams& params) {
  validate(spec);
  if (params.intra_op_threads < 0 || params.warmup_runs < 0)
    throw std::invalid_argument("model params: intra_op_threads and warmup_runs must be >= 0");
  if (!std::ifstream(path, std::ios::binary).good())
    throw std::runtime_error("model file not found or unreadable: " + path);
  if (params.backend == BackendKind::onnxruntime) return detail::load_onnxruntime(path, spec, params);
#ifdef EDGEACT_WITH_TENSORRT
  return detail::load_tensorrt(path, spec, params);
#else
  throw std::runtime_error("cannot load " + path +
                           ": this build has no TensorRT backend (rebuild with -DEDGEACT_WITH_TENSORRT=ON on a "
                           "machine with TensorRT and CUDA)");
#endif
}

// ---------------------------------------------------------------------------------------------------------------
namespace {
inline int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

bool Session::all_finite(const float* x, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

Session::Session(std::shared_ptr<const Model> model, const ExecutionParams& exec, const PostParams& post,
                 const std::vector<FrameShape>& frame_shapes)
    : model_(std::move(model)),
      ens_(model_->spec().chunk_size, model_->spec().action_dim, exec),
      post_(model_->spec().action_dim, post) {
  const ModelSpec& spec = model_->spec();
  if (!frame_shapes.empty() && frame_shapes.size() != spec.cameras.size())
    throw std::invalid_argument("frame_shapes: " + std::to_string(frame_shapes.size()) + " shapes for " +
                                std::to_string(spec.cameras.size()) + " cameras");
  for (size_t c = 0; c < spec.cameras.size(); ++c) {
    const auto& cam = spec.cameras[c];
    FrameShape fs = frame_shapes.empty() ? FrameShape{cam.height, cam.width} : frame_shapes[c];
    if (fs.height < 1 || fs.width < 1)
      throw std::invalid_argument("frame_shapes: camera '" + cam.name + "' frame size must be positive");
    shapes_.push_back(fs);
    resizers_.emplace_back(fs.height, fs.width, cam.height, cam.width, cam.channels, cam.layout);
  }
  ctx_ = model_->create_context();
  detail::warm_up(*ctx_, spec, 1, "a new session");
  action_.assign(static_cast<size_t>(spec.action_dim), 0.0f);
  pending_.assign(static_cast<size_t>(spec.chunk_size) * spec.action_dim, 0.0f);
  reset(nullptr);
}

void Session::reset(const float* initial_command) noexcept {
  ens_.reset();
  post_.reset(initial_command);
  pending_origin_ = -1;
}

Status Session::check(const Observation& obs) const noexcept {
  const ModelSpec& spec = model_->spec();
  if (obs.n_images != static_cast<int>(spec.cameras.size())) return Status::bad_observation;
  for (int c = 0; c < obs.n_images; ++c) {
    const ImageView& im = obs.images[c];
    if (im.data == nullptr || im.height != shapes_[c].height || im.width != shapes_[c].width ||
        im.channels != spec.cameras[c].channels)
      return Status::bad_observation;
  }
  if (obs.n_vectors != static_cast<int>(spec.vectors.size())) return Status::bad_observation;
  for (int v = 0; v < obs.n_vectors; ++v) {
    const VectorView& vec = obs.vectors[v];
    const int dim = spec.vectors[v].dim;
    if (vec.data == nullptr || vec.dim != dim || !all_finite(vec.data, static_cast<size_t>(dim)))
      return Status::bad_observation;
  }
  return Status::ok;
}

void Session::preprocess(const Observation& obs) noexcept {
  for (size_t c = 0; c < resizers_.size(); ++c)
    resizers_[c].run(obs.images[c].data, ctx_->image_input(static_cast<int>(c)));
  const auto& vectors = model_->spec().vectors;
  for (size_t v = 0; v < vectors.size(); ++v)
    std::memcpy(ctx_->vector_input(static_cast<int>(v)), obs.vectors[v].data, sizeof(float) * vectors[v].dim);
}

Status Session::step(const Observation& obs, float* command_out, StepTimings* timings) noexcept {
  StepTimings tm;
  int64_t t0 = now_ns();
  Status st = check(obs);
  const ExecutionParams& ep = ens_.params();
  const size_t n = pending_.size();
  if (st == Status::ok && ep.mode == ExecMode::async && pending_origin_ >= 0 &&
      ens_.tick() >= pending_origin_ + ep.latency_ticks) {
    st = ens_.push(pending_.data(), pending_origin_);
    pending_origin_ = -1;
  }
  if (st == Status::ok && ens_.wants_chunk()) {
    const int64_t origin = ep.mode == ExecMode::async ? ens_.begin_request() : ens_.tick();
    preprocess(obs);
    int64_t t1 = now_ns();
    tm.pre_ns = t1 - t0;
    st = ctx_->run();
    if (st == Status::ok && !all_finite(ctx_->output(), n)) st = Status::bad_output;
    tm.infer_ns = now_ns() - t1;
    if (st == Status::ok) {
      if (ep.mode == ExecMode::async && ep.latency_ticks > 0) {
        std::memcpy(pending_.data(), ctx_->output(), n * sizeof(float));
        pending_origin_ = origin;
      } else {
        st = ens_.push(ctx_->output(), origin);
      }
    } else if (ep.mode == ExecMode::async) {
      ens_.cancel_request();
    }
  } else {
    tm.pre_ns = now_ns() - t0;
  }
  int64_t t2 = now_ns();
  const bool have = ens_.update(action_.data());
  int64_t t3 = now_ns();
  tm.ensemble_ns = t3 - t2;
  Status pst = post_.apply(st == Status::ok && have ? action_.data() : nullptr, command_out);
  const int64_t t4 = now_ns();
  tm.post_ns = t4 - t3;
  tm.total_ns = t4 - t0;
  if (timings != nullptr) *timings = tm;
  return st == Status::ok ? pst : st;
}

}  // namespace edgeact::rt
