// edgeact real-time runtime core: the public C++ API.
//
// Read this header as the manual. The pieces, from the outside in:
//
//   Model    immutable after load: a backend (ONNX Runtime or TensorRT) and the model's I/O contract (ModelSpec,
//            built by the caller from policy.json, docs/design.md). Shared by any number of sessions.
//   Session  one episode's state: pre-allocated input/output buffers (InferContext), the frame resizers, the
//            Ensembler (action execution, docs/design.md) and the PostProcessor (limits, max change, NaN guard).
//            `step()` runs pre -> infer -> ensemble -> post for one tick.
//   Loop     the real-time loop: its own thread at a fixed rate on absolute deadlines, observation inbox and
//            command outbox through lock-free triple buffers, per-stage timings, overrun counting, a jitter
//            histogram, and a watchdog that latches Status::safe_stop.
//
// Rules: configuration and load throw (std::invalid_argument / std::runtime_error) with messages naming the field
// or file; everything called per tick is noexcept, returns a Status, allocates nothing and takes no lock.
// Parameters come in structs whose defaults are the values of the `default_*_params()` functions.
// The library logs through a callback (set_log_callback), only from load and start-up paths, never from a tick.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgeact::rt {

// ---------------------------------------------------------------------------------------------------------------
// Status codes: returned on the hot path. Values are stable (mirrored by edgeact.runtime.core.Status).
enum class Status : int32_t {
  ok = 0,               // a fresh, post-processed command
  hold = 1,             // no action covers this tick: the last safe command is repeated
  no_observation = 2,   // loop: nothing has been posted yet
  bad_observation = 3,  // NaN/Inf in a vector input, or a frame or vector of the wrong size
  bad_output = 4,       // NaN/Inf in the model output (the chunk is discarded)
  backend_error = 5,    // the inference call failed
  safe_stop = 6,        // loop: latched by the watchdog (stale observation, overruns, fault)
  invalid = 7,          // an API contract was broken (e.g. a chunk origin out of order)
};
const char* status_name(Status s) noexcept;
inline bool is_fault(Status s) noexcept {
  return s == Status::bad_observation || s == Status::bad_output || s == Status::backend_error ||
         s == Status::safe_stop || s == Status::invalid;
}

// ---------------------------------------------------------------------------------------------------------------
// Logging. The callback may be called from the thread that loads a model or starts a loop; never from a tick.
enum class LogLevel : int32_t { debug = 10, info = 20, warning = 30, error = 40 };
using LogCallback = void (*)(LogLevel level, const char* message, void* user);
void set_log_callback(LogCallback callback, void* user) noexcept;
void log_message(LogLevel level, const std::string& message) noexcept;

// ---------------------------------------------------------------------------------------------------------------
// Backends. ONNX Runtime is loaded at run time: init_onnxruntime() dlopens the library (the one inside the
// onnxruntime Python wheel) and initialises the C++ API from OrtGetApiBase. Throws std::runtime_error.
void init_onnxruntime(const std::string& library_path);
bool onnxruntime_ready() noexcept;
bool tensorrt_compiled() noexcept;  // true when built with EDGEACT_WITH_TENSORRT

enum class BackendKind : int32_t { onnxruntime = 0, tensorrt = 1 };
enum class Layout : int32_t { nhwc = 0, nchw = 1 };

// One camera input of the model (sidecar `inputs` of kind image + `cameras`).
struct CameraInput {
  std::string name;        // camera name, e.g. "image" or "top"
  std::string input_name;  // graph input name, e.g. "observation.image"
  int height = 0, width = 0, channels = 3;
  Layout layout = Layout::nhwc;
};

// One float vector input of the model (sidecar `inputs` of kind vector): float32 (1, dim), e.g.
// "observation.state" or "observation.environment_state".
struct VectorInput {
  std::string input_name;  // graph input name = the feature key
  int dim = 0;
};

// The model's I/O contract (docs/design.md, "Policy artifact"): uint8 images (1,H,W,C) or (1,C,H,W), one per
// camera, then float32 vectors (1,D), in graph order; float32 output (1,k,A). Either list may be empty, not both.
struct ModelSpec {
  std::vector<CameraInput> cameras;
  std::vector<VectorInput> vectors;
  std::string output_name;
  int chunk_size = 0;
  int action_dim = 0;
};
void validate(const ModelSpec& spec);  // throws std::invalid_argument naming the field

struct ModelParams {
  BackendKind backend = BackendKind::onnxruntime;
  int intra_op_threads = 1;  // ONNX Runtime intra-op threads (1 keeps the tick deterministic)
  int warmup_runs = 3;       // inferences run at load and when a context is created
  // ONNX Runtime session config entries (SessionOptions::AddConfigEntry), e.g.
  // {"session.use_device_allocator_for_initializers", "1"} (ONNX Runtime's keys, passed through unchecked).
  std::vector<std::pair<std::string, std::string>> ort_config;
  // glibc: during the load, blocks over 128 KiB are mmapped (freed parse buffers leave at once: lower peak); after
  // it, the mmap threshold is fixed at 32 MiB and malloc_trim hands the freed heap back to the OS (lower resident
  // memory). Changes the process's malloc threshold; skipped when GLIBC_TUNABLES sets mmap_threshold.
  bool release_load_memory = true;
};
ModelParams default_model_params();

// Per-session inference buffers. The caller fills the inputs in place, run() infers, output() holds k*A floats.
class InferContext {
 public:
  virtual ~InferContext() = default;
  virtual uint8_t* image_input(int camera) noexcept = 0;  // H*W*C bytes in the camera's layout
  virtual float* vector_input(int i) noexcept = 0;        // ModelSpec::vectors[i].dim floats
  virtual const float* output() const noexcept = 0;       // chunk_size * action_dim floats, (k, A) row-major
  virtual Status run() noexcept = 0;                      // ok or backend_error
};

class Model {
 public:
  // Loads `path` with the backend in params; checks the graph's inputs/outputs against spec; runs warm-ups.
  // Throws std::runtime_error naming the file and what is wrong.
  static std::shared_ptr<const Model> load(const std::string& path, const ModelSpec& spec,
                                           const ModelParams& params);
  virtual ~Model() = default;
  const ModelSpec& spec() const noexcept { return spec_; }
  virtual BackendKind backend() const noexcept = 0;
  // New pre-allocated buffers (allocates; call at configuration time). Throws std::runtime_error.
  virtual std::unique_ptr<InferContext> create_context() const = 0;

 protected:
  explicit Model(ModelSpec spec) : spec_(std::move(spec)) {}
  ModelSpec spec_;
};

// ---------------------------------------------------------------------------------------------------------------
// Action execution (docs/design.md; reference: edgeact/runtime/ensemble_ref.py).
enum class ExecMode : int32_t { ensemble = 0, chunk = 1, async = 2 };

struct ExecutionParams {
  ExecMode mode = ExecMode::ensemble;
  double temporal_ensemble_coeff = 0.01;  // m in w_i = exp(-m*i), i = 0 the oldest chunk covering the tick
  int n_action_steps = 0;                 // chunk/async: ticks between inferences; 0 means chunk_size
  int latency_ticks = 0;                  // async in Session::step only: simulated inference delay in ticks
};
ExecutionParams default_execution_params();

// A ring buffer of the last chunk_size chunks, each with its origin tick.
class Ensembler {
 public:
  Ensembler(int chunk_size, int action_dim, const ExecutionParams& params);  // throws std::invalid_argument
  void reset() noexcept;
  bool wants_chunk() const noexcept;  // should an inference start at this tick?
  int64_t begin_request() noexcept;   // async: an inference for this tick started; returns its origin
  void cancel_request() noexcept;     // async: the request in flight failed
  // Adds a (k, A) chunk predicted from the observation of tick `origin` (<= tick(), newer than the last).
  Status push(const float* chunk, int64_t origin) noexcept;  // ok, bad_output (non-finite), invalid (origin)
  // Writes the action for the current tick into out (A floats) and advances one tick; false when none covers it.
  bool update(float* out) noexcept;
  void advance(int64_t n) noexcept;  // skip n ticks (missed deadlines)
  int64_t tick() const noexcept { return t_; }
  bool in_flight() const noexcept { return in_flight_; }
  int chunk_size() const noexcept { return k_; }
  int action_dim() const noexcept { return a_; }
  const ExecutionParams& params() const noexcept { return params_; }

 private:
  int k_, a_;
  ExecutionParams params_;
  std::vector<double> weights_;   // (k,)
  std::vector<float> chunks_;     // (k slots, k, A)
  std::vector<int64_t> origins_;  // (k,)
  std::vector<double> acc_;       // (A,)
  int64_t t_ = 0, newest_ = -1, last_request_ = -1;
  int head_ = 0, count_ = 0;
  bool in_flight_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// Pre-processing (reference: edgeact/runtime/prepost_ref.py). Bilinear resize with half-pixel centers computed
// in double and rounded half-up, written straight into the model's input layout. Tables are built once.
class FrameResizer {
 public:
  FrameResizer(int src_h, int src_w, int dst_h, int dst_w, int channels, Layout layout);  // throws
  void run(const uint8_t* src, uint8_t* dst) const noexcept;  // src (src_h, src_w, C) -> dst in layout
  int src_height() const noexcept { return sh_; }
  int src_width() const noexcept { return sw_; }
  int channels() const noexcept { return c_; }

 private:
  int sh_, sw_, dh_, dw_, c_;
  Layout layout_;
  bool identity_;
  std::vector<int> x0_, x1_, y0_, y1_;
  std::vector<double> fx_, fy_;
};

// Post-processing: NaN/Inf guard, per-tick maximum change (LeRobot's max_relative_target), joint limits.
// Empty vectors mean unbounded; otherwise one value per joint.
struct PostParams {
  std::vector<float> lower, upper, max_delta;
};
PostParams default_post_params();

class PostProcessor {
 public:
  PostProcessor(int action_dim, const PostParams& params);  // throws std::invalid_argument
  void reset(const float* initial_command) noexcept;       // nullptr: no command to hold yet
  // action == nullptr: hold. Returns ok, hold or bad_output; out is written whenever has_command().
  Status apply(const float* action, float* out) noexcept;
  bool has_command() const noexcept { return has_; }
  const float* last_command() const noexcept { return last_.data(); }
  int action_dim() const noexcept { return a_; }

 private:
  int a_;
  PostParams p_;
  std::vector<float> last_;
  bool has_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// Observations are views; nothing is copied until the session writes the model inputs.
struct ImageView {
  const uint8_t* data = nullptr;  // (height, width, channels) contiguous
  int height = 0, width = 0, channels = 0;
};
struct VectorView {
  const float* data = nullptr;  // dim contiguous floats
  int dim = 0;
};
struct Observation {
  const ImageView* images = nullptr;  // one per camera, in ModelSpec::cameras order
  int n_images = 0;
  const VectorView* vectors = nullptr;  // one per vector input, in ModelSpec::vectors order
  int n_vectors = 0;
  int64_t stamp_ns = 0;  // CLOCK_MONOTONIC capture time
};
struct FrameShape {
  int height = 0, width = 0;
};
struct StepTimings {
  int64_t pre_ns = 0, infer_ns = 0, ensemble_ns = 0, post_ns = 0;
  int64_t total_ns = 0;  // the whole Session::step, entry to return (total - infer = what the runtime adds)
};

class Session {
 public:
  // frame_shapes: the size of the frames each camera delivers (empty: the model's resolution). Throws.
  Session(std::shared_ptr<const Model> model, const ExecutionParams& exec, const PostParams& post,
          const std::vector<FrameShape>& frame_shapes);
  void reset(const float* initial_command) noexcept;
  // One synchronous tick (async mode: latency_ticks simulates the inference delay). Writes command_out (A
  // floats) whenever has_command(). timings may be nullptr.
  Status step(const Observation& obs, float* command_out, StepTimings* timings) noexcept;
  bool has_command() const noexcept { return post_.has_command(); }
  int64_t tick() const noexcept { return ens_.tick(); }

  // Pieces the Loop uses.
  Status check(const Observation& obs) const noexcept;  // shapes, vector sizes, finite vectors
  void preprocess(const Observation& obs) noexcept;     // frames -> resized model inputs, vectors copied
  InferContext& context() noexcept { return *ctx_; }
  Ensembler& ensembler() noexcept { return ens_; }
  PostProcessor& post() noexcept { return post_; }
  const Model& model() const noexcept { return *model_; }
  const std::vector<FrameShape>& frame_shapes() const noexcept { return shapes_; }
  static bool all_finite(const float* x, size_t n) noexcept;

 private:
  Status infer_and_push(int64_t origin) noexcept;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<InferContext> ctx_;
  std::vector<FrameShape> shapes_;
  std::vector<FrameResizer> resizers_;
  Ensembler ens_;
  PostProcessor post_;
  std::vector<float> action_;   // (A,)
  std::vector<float> pending_;  // async simulation: the chunk in flight (k*A)
  int64_t pending_origin_ = -1;
};

// ---------------------------------------------------------------------------------------------------------------
// The real-time loop.
struct LoopParams {
  double rate_hz = 50.0;
  double stale_timeout_s = 0.5;       // watchdog: observation age (or time since start) that latches safe_stop
  int max_consecutive_overruns = 10;  // watchdog: overruns in a row that latch safe_stop (0 disables)
  bool stop_on_fault = true;          // a fault status (NaN/Inf, backend error) latches safe_stop
  int realtime_priority = 0;          // > 0: SCHED_FIFO at this priority (falls back with a warning)
  bool lock_memory = false;           // mlockall(MCL_CURRENT | MCL_FUTURE) (falls back with a warning)
  std::vector<int> cpu_affinity;      // CPUs for the loop thread (empty: no pinning)
  double spin_us = 0.0;               // sleep until this long before each deadline, then busy-wait to it: that
                                      // much CPU per tick buys a wake-up that no longer waits on the OS timer
  int timing_capacity = 65536;        // ticks of per-stage timings kept
};
LoopParams default_loop_params();

struct LoopStats {
  int64_t ticks = 0, overruns = 0, skipped_ticks = 0, inferences = 0, holds = 0, faults = 0;
  int64_t max_consecutive_overruns = 0, last_inference_ns = 0;
  bool safe_stopped = false;
  std::string safe_stop_reason;
  std::vector<std::string> realtime_warnings;
};

// Per-tick rings: stage durations (ns), wake-up lateness (ns), and the ensembler tick each loop tick executed.
enum Stage : int { stage_pre = 0, stage_infer, stage_ensemble, stage_post, stage_write, stage_total,
                   stage_lateness, stage_tick, stage_count };
// Wake-up lateness histogram: bin i counts [edge i, edge i+1) us, the last bin is open, negatives go to bin 0.
constexpr int kJitterBins = 14;
extern const int64_t kJitterEdgesUs[kJitterBins];  // 0,1,2,5,10,20,50,100,200,500,1000,2000,5000,10000

struct Command {
  int64_t seq = -1, tick = 0, stamp_ns = 0;
  Status status = Status::no_observation;
  bool has_values = false;
  std::vector<float> values;  // (A,) sized by the caller or by latest_command()
};

class Loop {
 public:
  Loop(Session& session, const LoopParams& params);  // throws std::invalid_argument; allocates everything
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  void start();  // any thread; real-time setup here (warnings logged and kept in stats)
  void stop();   // joins the threads; idempotent
  bool running() const noexcept { return running_.load(std::memory_order_acquire); }
  // Any thread (posts are serialised among themselves, never with the tick). Copies into the inbox.
  Status post_observation(const Observation& obs) noexcept;
  bool latest_command(Command* out) const;  // false before the first tick
  LoopStats stats() const;
  std::vector<int64_t> timings(int stage) const;  // last min(ticks, capacity) values, oldest first
  std::vector<int64_t> jitter_histogram() const;  // kJitterBins counts
  int64_t published_seq() const noexcept { return out_seq_.load(std::memory_order_acquire); }

  struct Impl;  // internals in loop.cpp

 private:
  void run() noexcept;
  int64_t tick(int64_t deadline) noexcept;  // one tick; returns its end time
  Status infer_stage(const Observation& obs, int64_t* pre_ns, int64_t* infer_ns) noexcept;
  void record(int64_t tick_index, const int64_t* stage_values, Status status) noexcept;
  void infer_thread() noexcept;
  Session& s_;
  LoopParams p_;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> running_{false}, stop_{false};
  std::atomic<int64_t> out_seq_{-1};
  std::thread thread_, infer_;
};

}  // namespace edgeact::rt
