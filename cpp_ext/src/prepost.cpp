// Pre-processing (fused bilinear resize into the model's input layout) and post-processing (NaN/Inf guard,
// per-tick maximum change, joint limits). Mirrors edgeact/runtime/prepost_ref.py. Also status names and logging.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "edgeact/runtime.h"

namespace edgeact::rt {

// ---------------------------------------------------------------------------------------------------------------
const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::hold: return "hold";
    case Status::no_observation: return "no_observation";
    case Status::bad_observation: return "bad_observation";
    case Status::bad_output: return "bad_output";
    case Status::backend_error: return "backend_error";
    case Status::safe_stop: return "safe_stop";
    case Status::invalid: return "invalid";
  }
  return "unknown";
}

namespace {
std::mutex g_log_mutex;  // guards the callback pointer; logging happens only off the hot path
LogCallback g_log_cb = nullptr;
void* g_log_user = nullptr;
}  // namespace

void set_log_callback(LogCallback callback, void* user) noexcept {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log_cb = callback;
  g_log_user = user;
}

void log_message(LogLevel level, const std::string& message) noexcept {
  LogCallback cb;
  void* user;
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    cb = g_log_cb;
    user = g_log_user;
  }
  if (cb != nullptr) cb(level, message.c_str(), user);
}

// ---------------------------------------------------------------------------------------------------------------
// Half-pixel centers (the convention of cv2.INTER_LINEAR and torch interpolate(align_corners=False)):
// src = (dst + 0.5) * in / out - 0.5, clamped at 0; the right/bottom neighbour is clamped to the edge.
static void axis_table(int in, int out, std::vector<int>& i0, std::vector<int>& i1, std::vector<double>& f) {
  i0.resize(out);
  i1.resize(out);
  f.resize(out);
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int d = 0; d < out; ++d) {
    double src = (static_cast<double>(d) + 0.5) * scale - 0.5;
    if (src < 0.0) src = 0.0;
    int lo = static_cast<int>(std::floor(src));
    if (lo > in - 1) lo = in - 1;
    i0[d] = lo;
    i1[d] = std::min(lo + 1, in - 1);
    f[d] = src - static_cast<double>(lo);
  }
}

FrameResizer::FrameResizer(int src_h, int src_w, int dst_h, int dst_w, int channels, Layout layout)
    : sh_(src_h), sw_(src_w), dh_(dst_h), dw_(dst_w), c_(channels), layout_(layout) {
  if (sh_ < 1 || sw_ < 1 || dh_ < 1 || dw_ < 1 || c_ < 1)
    throw std::invalid_argument("frame resize: sizes must be positive, got " + std::to_string(sh_) + "x" +
                                std::to_string(sw_) + " -> " + std::to_string(dh_) + "x" + std::to_string(dw_) +
                                " with " + std::to_string(c_) + " channels");
  identity_ = sh_ == dh_ && sw_ == dw_;
  axis_table(sw_, dw_, x0_, x1_, fx_);
  axis_table(sh_, dh_, y0_, y1_, fy_);
}

void FrameResizer::run(const uint8_t* src, uint8_t* dst) const noexcept {
  const size_t plane = static_cast<size_t>(dh_) * dw_;
  if (identity_ && layout_ == Layout::nhwc) {
    std::memcpy(dst, src, plane * c_);
    return;
  }
  const size_t row = static_cast<size_t>(sw_) * c_;
  for (int y = 0; y < dh_; ++y) {
    const uint8_t* r0 = src + y0_[y] * row;
    const uint8_t* r1 = src + y1_[y] * row;
    const double wy = fy_[y];
    for (int x = 0; x < dw_; ++x) {
      const size_t a = static_cast<size_t>(x0_[x]) * c_, b = static_cast<size_t>(x1_[x]) * c_;
      const double wx = fx_[x];
      for (int c = 0; c < c_; ++c) {
        // The same expression, in the same order, as prepost_ref.resize_bilinear.
        const double top = (1.0 - wx) * r0[a + c] + wx * r0[b + c];
        const double bot = (1.0 - wx) * r1[a + c] + wx * r1[b + c];
        const double v = (1.0 - wy) * top + wy * bot;
        const uint8_t q = static_cast<uint8_t>(std::floor(v + 0.5));
        if (layout_ == Layout::nhwc)
          dst[(static_cast<size_t>(y) * dw_ + x) * c_ + c] = q;
        else
          dst[c * plane + static_cast<size_t>(y) * dw_ + x] = q;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
PostParams default_post_params() { return PostParams{}; }

PostProcessor::PostProcessor(int action_dim, const PostParams& params) : a_(action_dim), p_(params) {
  if (a_ < 1) throw std::invalid_argument("post: action_dim must be >= 1");
  const struct {
    const char* name;
    const std::vector<float>& v;
  } fields[] = {{"lower", p_.lower}, {"upper", p_.upper}, {"max_delta", p_.max_delta}};
  for (const auto& f : fields) {
    if (!f.v.empty() && static_cast<int>(f.v.size()) != a_)
      throw std::invalid_argument(std::string("post.") + f.name + " must have " + std::to_string(a_) +
                                  " values (one per joint), got " + std::to_string(f.v.size()));
  }
  for (float d : p_.max_delta)
    if (!(d >= 0.0f)) throw std::invalid_argument("post.max_delta must be >= 0 (NaN refused)");
  if (!p_.lower.empty() && !p_.upper.empty())
    for (int i = 0; i < a_; ++i)
      if (!(p_.lower[i] <= p_.upper[i]))
        throw std::invalid_argument("post.lower must be <= post.upper (joint " + std::to_string(i) + ")");
  last_.assign(static_cast<size_t>(a_), 0.0f);
}

void PostProcessor::reset(const float* initial_command) noexcept {
  has_ = initial_command != nullptr;
  if (has_) std::memcpy(last_.data(), initial_command, a_ * sizeof(float));
}

Status PostProcessor::apply(const float* action, float* out) noexcept {
  Status st = Status::ok;
  if (action == nullptr) {
    st = Status::hold;
  } else {
    for (int i = 0; i < a_; ++i)
      if (!std::isfinite(action[i])) st = Status::bad_output;
  }
  if (st != Status::ok) {
    if (has_) std::memcpy(out, last_.data(), a_ * sizeof(float));
    return st;
  }
  for (int i = 0; i < a_; ++i) {
    float v = action[i];
    if (has_ && !p_.max_delta.empty()) {
      const float lo = last_[i] - p_.max_delta[i], hi = last_[i] + p_.max_delta[i];
      v = std::min(std::max(v, lo), hi);
    }
    if (!p_.lower.empty()) v = std::max(v, p_.lower[i]);
    if (!p_.upper.empty()) v = std::min(v, p_.upper[i]);
    last_[i] = v;
  }
  has_ = true;
  std::memcpy(out, last_.data(), a_ * sizeof(float));
  return Status::ok;
}

}  // namespace edgeact::rt
