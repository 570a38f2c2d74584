// Action execution: temporal ensembling, chunk execution and asynchronous merging (docs/design.md).
// Mirrors edgeact/runtime/ensemble_ref.py; tests hold both to 1e-6.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "edgeact/runtime.h"

namespace edgeact::rt {

ExecutionParams default_execution_params() { return ExecutionParams{}; }

Ensembler::Ensembler(int chunk_size, int action_dim, const ExecutionParams& params)
    : k_(chunk_size), a_(action_dim), params_(params) {
  if (k_ < 1) throw std::invalid_argument("execution: chunk_size must be >= 1, got " + std::to_string(k_));
  if (a_ < 1) throw std::invalid_argument("execution: action_dim must be >= 1, got " + std::to_string(a_));
  if (!std::isfinite(params_.temporal_ensemble_coeff))
    throw std::invalid_argument("execution.temporal_ensemble_coeff must be finite");
  if (params_.n_action_steps == 0) params_.n_action_steps = k_;
  if (params_.n_action_steps < 1 || params_.n_action_steps > k_)
    throw std::invalid_argument("execution.n_action_steps must be in [1, chunk_size=" + std::to_string(k_) +
                                "], got " + std::to_string(params_.n_action_steps));
  if (params_.latency_ticks < 0 || params_.latency_ticks >= k_)
    throw std::invalid_argument("execution.latency_ticks must be in [0, chunk_size), got " +
                                std::to_string(params_.latency_ticks));
  weights_.resize(static_cast<size_t>(k_));
  for (int i = 0; i < k_; ++i) weights_[i] = std::exp(-params_.temporal_ensemble_coeff * static_cast<double>(i));
  chunks_.assign(static_cast<size_t>(k_) * k_ * a_, 0.0f);
  origins_.assign(static_cast<size_t>(k_), 0);
  acc_.assign(static_cast<size_t>(a_), 0.0);
  reset();
}

void Ensembler::reset() noexcept {
  t_ = 0;
  head_ = 0;
  count_ = 0;
  newest_ = -1;
  in_flight_ = false;
  last_request_ = -1;
}

bool Ensembler::wants_chunk() const noexcept {
  switch (params_.mode) {
    case ExecMode::ensemble:
      return true;
    case ExecMode::chunk:
      return newest_ < 0 || t_ - newest_ >= params_.n_action_steps;
    case ExecMode::async:
      return !in_flight_ && (last_request_ < 0 || t_ - last_request_ >= params_.n_action_steps);
  }
  return false;
}

int64_t Ensembler::begin_request() noexcept {
  in_flight_ = true;
  last_request_ = t_;
  return t_;
}

void Ensembler::cancel_request() noexcept { in_flight_ = false; }

Status Ensembler::push(const float* chunk, int64_t origin) noexcept {
  const size_t n = static_cast<size_t>(k_) * a_;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(chunk[i])) return Status::bad_output;
  if (origin > t_ || origin <= newest_) return Status::invalid;
  std::memcpy(&chunks_[static_cast<size_t>(head_) * n], chunk, n * sizeof(float));
  origins_[head_] = origin;
  head_ = (head_ + 1) % k_;
  if (count_ < k_) ++count_;
  newest_ = origin;
  in_flight_ = false;
  return Status::ok;
}

bool Ensembler::update(float* out) noexcept {
  const int64_t t = t_++;
  if (newest_ < 0 || newest_ + k_ <= t) return false;  // nothing covers t: hold
  const size_t n = static_cast<size_t>(k_) * a_;
  if (params_.mode != ExecMode::ensemble) {
    const int slot = (head_ - 1 + k_) % k_;
    std::memcpy(out, &chunks_[slot * n + static_cast<size_t>(t - newest_) * a_], a_ * sizeof(float));
    return true;
  }
  for (int c = 0; c < a_; ++c) acc_[c] = 0.0;
  double wsum = 0.0;
  int i = 0;  // rank among the chunks covering t, 0 = oldest
  for (int r = 0; r < count_; ++r) {
    const int slot = (head_ - count_ + r + k_) % k_;
    const int64_t s = origins_[slot];
    if (s <= t - k_) continue;
    const float* row = &chunks_[slot * n + static_cast<size_t>(t - s) * a_];
    const double w = weights_[i++];
    for (int c = 0; c < a_; ++c) acc_[c] += w * static_cast<double>(row[c]);
    wsum += w;
  }
  for (int c = 0; c < a_; ++c) out[c] = static_cast<float>(acc_[c] / wsum);
  return true;
}

void Ensembler::advance(int64_t n) noexcept {
  if (n > 0) t_ += n;
}

}  // namespace edgeact::rt
