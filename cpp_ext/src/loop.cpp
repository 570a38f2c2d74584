// The real-time loop: a thread on absolute deadlines (clock_nanosleep TIMER_ABSTIME), observation inbox and command
// outbox through lock-free triple buffers, per-stage timings, overruns counted and skipped, a jitter histogram, a
// watchdog latching safe_stop, and (async mode) an inference thread fed through a semaphore.
// Nothing in run()'s tick allocates, throws, locks or calls back into Python.
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "edgeact/runtime.h"

namespace edgeact::rt {

const int64_t kJitterEdgesUs[kJitterBins] = {0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

LoopParams default_loop_params() { return LoopParams{}; }

namespace {
inline int64_t mono_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}
inline timespec to_ts(int64_t ns) noexcept {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000LL);
  ts.tv_nsec = static_cast<long>(ns % 1000000000LL);
  return ts;
}

// Lock-free triple buffer index box: bits 0-1 the middle slot, bit 2 "fresh".
struct TripleIndex {
  std::atomic<uint32_t> mid{1};
  int back = 0, front = 2;
  void reset() noexcept { mid.store(1), back = 0, front = 2; }
  void publish() noexcept {
    back = static_cast<int>(mid.exchange(static_cast<uint32_t>(back) | 4u, std::memory_order_acq_rel) & 3u);
  }
  bool take() noexcept {  // true when a new slot became the front
    if ((mid.load(std::memory_order_acquire) & 4u) == 0) return false;
    front = static_cast<int>(mid.exchange(static_cast<uint32_t>(front), std::memory_order_acq_rel) & 3u);
    return true;
  }
};

enum InferState : int { idle = 0, busy = 1, done = 2, failed = 3 };
}  // namespace

struct Loop::Impl {
  struct ObsSlot {
    std::vector<std::vector<uint8_t>> frames;
    std::vector<std::vector<float>> vectors;
    std::vector<ImageView> views;
    std::vector<VectorView> vector_views;
    Observation obs;
  };
  struct CmdSlot {
    int64_t seq = -1, tick = 0, stamp = 0;
    Status status = Status::no_observation;
    bool has = false;
    std::vector<float> values;
  };
  ObsSlot in[3];
  TripleIndex in_idx;
  bool have_obs = false;  // loop thread only
  std::mutex post_mutex;  // serialises posters with each other (never taken by the tick)
  CmdSlot out[3];
  TripleIndex out_idx;
  mutable std::mutex read_mutex;  // serialises readers of the outbox (never taken by the tick)
  mutable CmdSlot last_read;

  int cap = 0;
  std::unique_ptr<std::atomic<int64_t>[]> rings[stage_count];
  std::atomic<int64_t> hist[kJitterBins];
  std::atomic<int64_t> ticks{0}, overruns{0}, skipped{0}, inferences{0}, holds{0}, faults{0}, max_consec{0},
      last_infer_ns{0};
  std::atomic<bool> safe_stopped{false};
  char reason[256] = {0};
  std::vector<std::string> warnings;
  int64_t start_ns = 0;

  sem_t sem;
  std::atomic<int> infer_state{idle};
  std::atomic<int> infer_status{0};
  int64_t infer_origin = 0;
  std::vector<float> ready_chunk, action, command;

  void latch(const char* fmt, double a, double b) noexcept {
    if (safe_stopped.load(std::memory_order_relaxed)) return;
    std::snprintf(reason, sizeof(reason), fmt, a, b);
    safe_stopped.store(true, std::memory_order_release);
  }
  void latch_fault(Status st, int64_t tick_index) noexcept {
    if (safe_stopped.load(std::memory_order_relaxed)) return;
    const char* what = st == Status::bad_observation ? "NaN/Inf in the observation"
                       : st == Status::bad_output    ? "NaN/Inf in the model output"
                       : st == Status::backend_error ? "inference failed"
                                                     : "invalid API use";
    std::snprintf(reason, sizeof(reason), "fault %s: %s at tick %lld", status_name(st), what,
                  static_cast<long long>(tick_index));
    safe_stopped.store(true, std::memory_order_release);
  }
};

Loop::Loop(Session& session, const LoopParams& params) : s_(session), p_(params), impl_(std::make_unique<Impl>()) {
  if (!(p_.rate_hz > 0.0 && p_.rate_hz <= 100000.0))
    throw std::invalid_argument("loop.rate_hz must be in (0, 100000], got " + std::to_string(p_.rate_hz));
  if (!(p_.stale_timeout_s > 0.0)) throw std::invalid_argument("loop.stale_timeout_s must be > 0");
  if (p_.max_consecutive_overruns < 0) throw std::invalid_argument("loop.max_consecutive_overruns must be >= 0");
  if (p_.timing_capacity < 1) throw std::invalid_argument("loop.timing_capacity must be >= 1");
  if (!(p_.spin_us >= 0.0 && p_.spin_us <= 0.5e6 / p_.rate_hz))
    throw std::invalid_argument("loop.spin_us must be in [0, half the period], got " + std::to_string(p_.spin_us));
  if (p_.realtime_priority < 0 || p_.realtime_priority > 99)
    throw std::invalid_argument("loop.realtime_priority must be in [0, 99]");
  Impl& m = *impl_;
  const ModelSpec& spec = s_.model().spec();
  for (auto& slot : m.in) {
    for (size_t c = 0; c < spec.cameras.size(); ++c) {
      const FrameShape fs = s_.frame_shapes()[c];
      slot.frames.emplace_back(static_cast<size_t>(fs.height) * fs.width * spec.cameras[c].channels, 0);
      slot.views.push_back(ImageView{slot.frames.back().data(), fs.height, fs.width, spec.cameras[c].channels});
    }
    for (const auto& v : spec.vectors) {
      slot.vectors.emplace_back(static_cast<size_t>(v.dim), 0.0f);
      slot.vector_views.push_back(VectorView{slot.vectors.back().data(), v.dim});
    }
    slot.obs = Observation{slot.views.data(), static_cast<int>(slot.views.size()), slot.vector_views.data(),
                           static_cast<int>(slot.vector_views.size()), 0};
  }
  for (auto& slot : m.out) slot.values.assign(static_cast<size_t>(spec.action_dim), 0.0f);
  m.last_read.values.assign(static_cast<size_t>(spec.action_dim), 0.0f);
  m.cap = p_.timing_capacity;
  for (auto& r : m.rings) r.reset(new std::atomic<int64_t>[static_cast<size_t>(m.cap)]);
  m.ready_chunk.assign(static_cast<size_t>(spec.chunk_size) * spec.action_dim, 0.0f);
  m.action.assign(static_cast<size_t>(spec.action_dim), 0.0f);
  m.command.assign(static_cast<size_t>(spec.action_dim), 0.0f);
  if (sem_init(&m.sem, 0, 0) != 0) throw std::runtime_error("loop: sem_init failed");
}

Loop::~Loop() {
  stop();
  sem_destroy(&impl_->sem);
}

void Loop::start() {
  if (running()) return;
  Impl& m = *impl_;
  // The inbox is kept: an observation posted before start() is the first one (the watchdog checks its age).
  m.have_obs = false;
  {
    std::lock_guard<std::mutex> lock(m.read_mutex);
    m.out_idx.reset();
    for (auto& slot : m.out) slot.seq = -1;
    m.last_read.seq = -1;
  }
  for (auto& h : m.hist) h.store(0);
  for (auto* c :
       {&m.ticks, &m.overruns, &m.skipped, &m.inferences, &m.holds, &m.faults, &m.max_consec, &m.last_infer_ns})
    c->store(0);
  m.safe_stopped.store(false);
  m.reason[0] = '\0';
  m.infer_state.store(idle);
  m.warnings.clear();
  out_seq_.store(-1);
  if (p_.lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
    m.warnings.push_back(std::string("mlockall failed (") + std::strerror(errno) + "); running without locked memory");
  stop_.store(false);
  m.start_ns = mono_ns();
  running_.store(true, std::memory_order_release);
  if (s_.ensembler().params().mode == ExecMode::async) infer_ = std::thread([this] { infer_thread(); });
  thread_ = std::thread([this] { run(); });
  if (p_.realtime_priority > 0) {
    sched_param sp{};
    sp.sched_priority = p_.realtime_priority;
    const int err = pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &sp);
    if (err != 0)
      m.warnings.push_back("SCHED_FIFO priority " + std::to_string(p_.realtime_priority) + " refused (" +
                           std::strerror(err) + "); running with the default scheduler");
  }
  if (!p_.cpu_affinity.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : p_.cpu_affinity)
      if (c >= 0 && c < CPU_SETSIZE) CPU_SET(c, &set);
    const int err = pthread_setaffinity_np(thread_.native_handle(), sizeof(set), &set);
    if (err != 0)
      m.warnings.push_back(std::string("CPU affinity refused (") + std::strerror(err) +
                           "); the loop thread is not pinned");
  }
  for (const auto& w : m.warnings) log_message(LogLevel::warning, "loop: " + w);
}

void Loop::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (infer_.joinable()) {
    sem_post(&impl_->sem);
    infer_.join();
  }
  running_.store(false, std::memory_order_release);
}

Status Loop::post_observation(const Observation& obs) noexcept {
  Impl& m = *impl_;
  const ModelSpec& spec = s_.model().spec();
  if (obs.n_images != static_cast<int>(spec.cameras.size()) || obs.n_vectors != static_cast<int>(spec.vectors.size()))
    return Status::bad_observation;
  for (int c = 0; c < obs.n_images; ++c) {
    const ImageView& src = obs.images[c];
    const ImageView& want = m.in[0].views[c];
    if (src.data == nullptr || src.height != want.height || src.width != want.width || src.channels != want.channels)
      return Status::bad_observation;
  }
  for (int v = 0; v < obs.n_vectors; ++v)
    if (obs.vectors[v].data == nullptr || obs.vectors[v].dim != spec.vectors[v].dim) return Status::bad_observation;
  std::lock_guard<std::mutex> lock(m.post_mutex);
  Impl::ObsSlot& slot = m.in[m.in_idx.back];
  for (int c = 0; c < obs.n_images; ++c) std::memcpy(slot.frames[c].data(), obs.images[c].data, slot.frames[c].size());
  for (int v = 0; v < obs.n_vectors; ++v)
    std::memcpy(slot.vectors[v].data(), obs.vectors[v].data, sizeof(float) * slot.vectors[v].size());
  slot.obs.stamp_ns = obs.stamp_ns != 0 ? obs.stamp_ns : mono_ns();
  m.in_idx.publish();
  return Status::ok;
}

void Loop::infer_thread() noexcept {
  Impl& m = *impl_;
  InferContext& ctx = s_.context();
  const size_t n = m.ready_chunk.size();
  for (;;) {
    while (sem_wait(&m.sem) != 0 && errno == EINTR) {
    }
    if (stop_.load()) return;
    if (m.infer_state.load(std::memory_order_acquire) != busy) continue;
    const int64_t t0 = mono_ns();
    Status st = ctx.run();
    if (st == Status::ok && !Session::all_finite(ctx.output(), n)) st = Status::bad_output;
    if (st == Status::ok) std::memcpy(m.ready_chunk.data(), ctx.output(), n * sizeof(float));
    m.last_infer_ns.store(mono_ns() - t0);
    m.infer_status.store(static_cast<int>(st));
    m.infer_state.store(st == Status::ok ? done : failed, std::memory_order_release);
  }
}

void Loop::run() noexcept {
  Impl& m = *impl_;
  // The default 50 us timer slack of normal threads would show up as wake-up lateness: ask for 1 ns.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const int64_t period = static_cast<int64_t>(std::llround(1e9 / p_.rate_hz));
  const int64_t spin = static_cast<int64_t>(std::llround(p_.spin_us * 1e3));  // <= period / 2 (checked)
  int64_t deadline = mono_ns() + period;
  int64_t consecutive = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    const timespec ts = to_ts(deadline - spin);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    // Optional spin: the last `spin` ns are busy-waited, so the wake-up no longer depends on the timer's latency.
    while (spin > 0 && mono_ns() < deadline) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    }
    const int64_t end = tick(deadline);
    // Next deadline: absolute; missed deadlines are counted and skipped, never bursted.
    deadline += period;
    if (end <= deadline) {
      consecutive = 0;
      continue;
    }
    const int64_t missed = (end - deadline) / period + 1;
    deadline += missed * period;
    m.overruns.fetch_add(1, std::memory_order_relaxed);
    m.skipped.fetch_add(missed, std::memory_order_relaxed);
    s_.ensembler().advance(missed);  // actions stay aligned with time
    ++consecutive;
    if (consecutive > m.max_consec.load(std::memory_order_relaxed)) m.max_consec.store(consecutive);
    if (p_.max_consecutive_overruns > 0 && consecutive >= p_.max_consecutive_overruns)
      m.latch("%.0f consecutive overruns (limit %.0f)", static_cast<double>(consecutive),
              static_cast<double>(p_.max_consecutive_overruns));
  }
}

int64_t Loop::tick(int64_t deadline) noexcept {
  Impl& m = *impl_;
  const int64_t wake = mono_ns();
  int64_t vals[stage_count] = {0};
  // Observation: the newest one wins; it stays current until a newer one arrives or it goes stale.
  if (m.in_idx.take()) m.have_obs = true;
  const Observation* obs = m.have_obs ? &m.in[m.in_idx.front].obs : nullptr;
  const int64_t age = wake - (obs != nullptr ? obs->stamp_ns : m.start_ns);
  const int64_t stale_ns = static_cast<int64_t>(p_.stale_timeout_s * 1e9);
  if (age > stale_ns)
    m.latch(obs != nullptr ? "stale observation: %.1f ms old (timeout %.1f ms)"
                           : "no observation for %.1f ms after start (timeout %.1f ms)",
            age / 1e6, stale_ns / 1e6);
  Status st = Status::ok;
  if (m.safe_stopped.load(std::memory_order_relaxed))
    st = Status::safe_stop;
  else if (obs == nullptr)
    st = Status::no_observation;
  else
    st = infer_stage(*obs, &vals[stage_pre], &vals[stage_infer]);
  int64_t t = mono_ns();
  const bool have = s_.ensembler().update(m.action.data());
  const int64_t t2 = mono_ns();
  vals[stage_ensemble] = t2 - t;
  const Status pst = s_.post().apply(st == Status::ok && have ? m.action.data() : nullptr, m.command.data());
  if (st == Status::ok) st = pst;
  const int64_t t3 = mono_ns();
  vals[stage_post] = t3 - t2;

  // Write: publish into the outbox.
  const int64_t tick_index = m.ticks.load(std::memory_order_relaxed);
  Impl::CmdSlot& slot = m.out[m.out_idx.back];
  slot.seq = tick_index;
  slot.tick = s_.ensembler().tick() - 1;
  slot.stamp = t3;
  slot.status = st;
  slot.has = s_.post().has_command();
  std::memcpy(slot.values.data(), m.command.data(), slot.values.size() * sizeof(float));
  m.out_idx.publish();
  out_seq_.store(tick_index, std::memory_order_release);
  const int64_t end = mono_ns();
  vals[stage_write] = end - t3;
  vals[stage_total] = end - wake;
  vals[stage_lateness] = wake - deadline;
  vals[stage_tick] = slot.tick;
  record(tick_index, vals, st);
  return end;
}

Status Loop::infer_stage(const Observation& obs, int64_t* pre_ns, int64_t* infer_ns) noexcept {
  Impl& m = *impl_;
  Ensembler& ens = s_.ensembler();
  const int64_t t0 = mono_ns();
  Status st = s_.check(obs);
  if (ens.params().mode == ExecMode::async) {
    // Merge a finished chunk (its origin is the tick it was requested at), then maybe start the next one.
    const int is = m.infer_state.load(std::memory_order_acquire);
    if (is == done || is == failed) {
      const Status got =
          is == done ? ens.push(m.ready_chunk.data(), m.infer_origin) : static_cast<Status>(m.infer_status.load());
      if (got != Status::ok) ens.cancel_request();
      if (st == Status::ok) st = got;
      m.inferences.fetch_add(1, std::memory_order_relaxed);
      m.infer_state.store(idle, std::memory_order_relaxed);
    }
    if (st != Status::ok || m.infer_state.load(std::memory_order_relaxed) != idle || !ens.wants_chunk()) {
      *pre_ns = mono_ns() - t0;
      return st;
    }
    m.infer_origin = ens.begin_request();
    s_.preprocess(obs);  // the inference thread is idle: its buffers are ours
    const int64_t t1 = mono_ns();
    *pre_ns = t1 - t0;
    m.infer_state.store(busy, std::memory_order_release);
    sem_post(&m.sem);
    *infer_ns = mono_ns() - t1;
    return st;
  }
  if (st != Status::ok || !ens.wants_chunk()) {
    *pre_ns = mono_ns() - t0;
    return st;
  }
  s_.preprocess(obs);
  const int64_t t1 = mono_ns();
  *pre_ns = t1 - t0;
  InferContext& ctx = s_.context();
  st = ctx.run();
  if (st == Status::ok && !Session::all_finite(ctx.output(), m.ready_chunk.size())) st = Status::bad_output;
  if (st == Status::ok) st = ens.push(ctx.output(), ens.tick());
  m.inferences.fetch_add(1, std::memory_order_relaxed);
  *infer_ns = mono_ns() - t1;
  return st;
}

void Loop::record(int64_t tick_index, const int64_t* vals, Status st) noexcept {
  Impl& m = *impl_;
  if (st == Status::hold) m.holds.fetch_add(1, std::memory_order_relaxed);
  if (is_fault(st) && st != Status::safe_stop) {
    m.faults.fetch_add(1, std::memory_order_relaxed);
    if (p_.stop_on_fault) m.latch_fault(st, tick_index);
  }
  const size_t ri = static_cast<size_t>(tick_index % m.cap);
  for (int k = 0; k < stage_count; ++k) m.rings[k][ri].store(vals[k], std::memory_order_relaxed);
  int bin = 0;
  while (bin + 1 < kJitterBins && vals[stage_lateness] >= kJitterEdgesUs[bin + 1] * 1000) ++bin;
  m.hist[bin].fetch_add(1, std::memory_order_relaxed);
  m.ticks.store(tick_index + 1, std::memory_order_release);
}

bool Loop::latest_command(Command* out) const {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.read_mutex);
  if (m.out_idx.take()) {
    const Impl::CmdSlot& s = m.out[m.out_idx.front];
    m.last_read.seq = s.seq;
    m.last_read.tick = s.tick;
    m.last_read.stamp = s.stamp;
    m.last_read.status = s.status;
    m.last_read.has = s.has;
    m.last_read.values = s.values;
  }
  if (m.last_read.seq < 0) return false;
  out->seq = m.last_read.seq;
  out->tick = m.last_read.tick;
  out->stamp_ns = m.last_read.stamp;
  out->status = m.last_read.status;
  out->has_values = m.last_read.has;
  out->values = m.last_read.values;
  return true;
}

LoopStats Loop::stats() const {
  const Impl& m = *impl_;
  LoopStats s;
  s.ticks = m.ticks.load();
  s.overruns = m.overruns.load();
  s.skipped_ticks = m.skipped.load();
  s.inferences = m.inferences.load();
  s.holds = m.holds.load();
  s.faults = m.faults.load();
  s.max_consecutive_overruns = m.max_consec.load();
  s.last_inference_ns = m.last_infer_ns.load();
  s.safe_stopped = m.safe_stopped.load(std::memory_order_acquire);
  if (s.safe_stopped) s.safe_stop_reason = m.reason;
  s.realtime_warnings = m.warnings;
  return s;
}

std::vector<int64_t> Loop::timings(int stage) const {
  if (stage < 0 || stage >= stage_count) throw std::invalid_argument("loop timings: unknown stage");
  const Impl& m = *impl_;
  const int64_t ticks = m.ticks.load(std::memory_order_acquire);
  const int64_t n = std::min<int64_t>(ticks, m.cap);
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = m.rings[stage][static_cast<size_t>((ticks - n + i) % m.cap)].load();
  return out;
}

std::vector<int64_t> Loop::jitter_histogram() const {
  std::vector<int64_t> out(kJitterBins);
  for (int i = 0; i < kJitterBins; ++i) out[i] = impl_->hist[i].load();
  return out;
}

}  // namespace edgeact::rt
