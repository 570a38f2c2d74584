// Session and Loop unit tests with an in-process fake backend (no ONNX Runtime needed): the loop's commands equal
// the ensembler fed the same chunks, stage timings and histogram are kept, the watchdog latches safe_stop on a
// stale observation and on consecutive overruns, async inference merges chunks from its own thread, and a model
// without cameras but with several vector inputs (a PushT keypoint policy) gets every vector, checked.
#include <chrono>
#include <cmath>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <cstring>
#include <thread>

#include "edgeact/runtime.h"
#include "harness.h"

using namespace edgeact::rt;

// Every C++ heap allocation in the process is counted, to check that ticks allocate nothing.
static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// out[j, a] = sum_v vector_v[a % dim_v] + 0.01 j + image_0[0] / 255 (without cameras: no image term); NaN when
// vector_0[0] < -10; sleeps `delay_us` per run.
class FakeContext final : public InferContext {
 public:
  FakeContext(const ModelSpec& s, int delay_us) : spec_(s), delay_us_(delay_us) {
    for (const auto& c : s.cameras) images_.emplace_back(static_cast<size_t>(c.height) * c.width * c.channels, 0);
    for (const auto& v : s.vectors) vectors_.emplace_back(static_cast<size_t>(v.dim), 0.0f);
    out_.assign(static_cast<size_t>(s.chunk_size) * s.action_dim, 0.0f);
  }
  uint8_t* image_input(int camera) noexcept override { return images_[camera].data(); }
  float* vector_input(int i) noexcept override { return vectors_[i].data(); }
  const float* output() const noexcept override { return out_.data(); }
  Status run() noexcept override {
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    const float image = images_.empty() ? 0.0f : images_[0][0] / 255.0f;
    for (int j = 0; j < spec_.chunk_size; ++j)
      for (int a = 0; a < spec_.action_dim; ++a) {
        float v = 0.01f * j + image;
        for (const auto& vec : vectors_) v += vec[a % vec.size()];
        out_[j * spec_.action_dim + a] = vectors_[0][0] < -10.0f ? std::nanf("") : v;
      }
    return Status::ok;
  }

 private:
  ModelSpec spec_;
  int delay_us_;
  std::vector<std::vector<uint8_t>> images_;
  std::vector<std::vector<float>> vectors_;
  std::vector<float> out_;
};

class FakeModel final : public Model {
 public:
  FakeModel(ModelSpec s, int delay_us) : Model(std::move(s)), delay_us_(delay_us) {}
  BackendKind backend() const noexcept override { return BackendKind::onnxruntime; }
  std::unique_ptr<InferContext> create_context() const override {
    return std::make_unique<FakeContext>(spec_, delay_us_);
  }

 private:
  int delay_us_;
};

std::shared_ptr<const Model> fake_model(int delay_us = 0) {
  ModelSpec s;
  s.cameras.push_back(CameraInput{"image", "observation.image", 4, 6, 3, Layout::nhwc});
  s.vectors.push_back(VectorInput{"observation.state", 2});
  s.output_name = "action";
  s.chunk_size = 8;
  s.action_dim = 2;
  return std::make_shared<FakeModel>(s, delay_us);
}

struct Obs {
  std::vector<uint8_t> frame = std::vector<uint8_t>(4 * 6 * 3, 51);
  float state[2] = {0.5f, -0.25f};
  ImageView view{frame.data(), 4, 6, 3};
  VectorView vview{state, 2};
  Observation get(int64_t stamp = 0) { return Observation{&view, 1, &vview, 1, stamp}; }
};

// A PushT keypoint policy's inputs: no camera, the agent position (2) and the block's keypoints (16).
std::shared_ptr<const Model> keypoint_model(int delay_us = 0) {
  ModelSpec s;
  s.vectors = {VectorInput{"observation.state", 2}, VectorInput{"observation.environment_state", 16}};
  s.output_name = "action";
  s.chunk_size = 8;
  s.action_dim = 2;
  validate(s);
  return std::make_shared<FakeModel>(s, delay_us);
}

struct KeypointObs {
  float state[2] = {0.5f, -0.25f};
  float keypoints[16];
  VectorView views[2] = {{state, 2}, {keypoints, 16}};
  KeypointObs() {
    for (int i = 0; i < 16; ++i) keypoints[i] = 100.0f + i;
  }
  Observation get(int64_t stamp = 0) { return Observation{nullptr, 0, views, 2, stamp}; }
  float expected(int j, int a) const { return state[a] + keypoints[a] + 0.01f * j; }  // the fake model's chunk
};

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

TEST(loop_commands_equal_the_ensembler_fed_the_same_chunks) {
  auto model = fake_model();
  Session session(model, ExecutionParams{}, PostParams{}, {});
  session.reset(nullptr);
  LoopParams lp;
  lp.rate_hz = 100;
  lp.max_consecutive_overruns = 0;  // a loaded test machine must not trip the watchdog here
  lp.stale_timeout_s = 5.0;
  Loop loop(session, lp);
  Obs obs;
  CHECK(loop.post_observation(obs.get()) == Status::ok);
  loop.start();
  sleep_ms(300);
  loop.stop();
  Command cmd;
  CHECK(loop.latest_command(&cmd));
  CHECK(cmd.status == Status::ok && cmd.has_values);
  const LoopStats st = loop.stats();
  if (!(st.ticks >= 3 && st.inferences == st.ticks && !st.safe_stopped))
    std::printf("  stats: ticks %lld inferences %lld reason '%s'\n", static_cast<long long>(st.ticks),
                static_cast<long long>(st.inferences), st.safe_stop_reason.c_str());
  CHECK(st.ticks >= 3 && st.inferences == st.ticks && !st.safe_stopped);
  // The chunk every tick sees, and the ensembler fed it at the executed ticks.
  std::vector<float> chunk(16);
  for (int j = 0; j < 8; ++j)
    for (int a = 0; a < 2; ++a) chunk[j * 2 + a] = obs.state[a] + 0.01f * j + 51 / 255.0f;
  Ensembler ref(8, 2, ExecutionParams{});
  float want[2] = {0, 0};
  for (int64_t t : loop.timings(stage_tick)) {
    ref.advance(t - ref.tick());
    ref.push(chunk.data(), t);
    ref.update(want);
  }
  CHECK_NEAR(cmd.values[0], want[0], 1e-6);
  CHECK_NEAR(cmd.values[1], want[1], 1e-6);
  int64_t hist_total = 0;
  for (int64_t c : loop.jitter_histogram()) hist_total += c;
  CHECK(hist_total == st.ticks);
  CHECK(static_cast<int64_t>(loop.timings(stage_total).size()) == st.ticks);
}

TEST(stale_observation_latches_safe_stop) {
  Session session(fake_model(), ExecutionParams{}, PostParams{}, {});
  const float initial[2] = {0.0f, 0.0f};
  session.reset(initial);  // a command to hold even if the first tick already finds the observation stale
  LoopParams lp;
  lp.rate_hz = 200;
  lp.stale_timeout_s = 0.05;
  Loop loop(session, lp);
  Obs obs;
  loop.post_observation(obs.get());
  loop.start();
  sleep_ms(200);
  loop.stop();
  const LoopStats st = loop.stats();
  CHECK(st.safe_stopped && st.safe_stop_reason.find("stale observation") != std::string::npos);
  Command cmd;
  CHECK(loop.latest_command(&cmd) && cmd.status == Status::safe_stop && cmd.has_values);
}

TEST(consecutive_overruns_are_skipped_and_stop) {
  Session session(fake_model(2000), ExecutionParams{}, PostParams{}, {});  // 2 ms inference
  session.reset(nullptr);
  LoopParams lp;
  lp.rate_hz = 2000;  // 0.5 ms period
  lp.max_consecutive_overruns = 4;
  Loop loop(session, lp);
  Obs obs;
  loop.post_observation(obs.get());
  loop.start();
  sleep_ms(100);
  loop.stop();
  const LoopStats st = loop.stats();
  CHECK(st.overruns >= 4 && st.skipped_ticks >= 3 * st.overruns);
  CHECK(st.safe_stopped && st.safe_stop_reason == "4 consecutive overruns (limit 4)");
}

TEST(a_fault_latches_safe_stop_with_the_status_name) {
  for (const bool nan_state : {true, false}) {
    Session session(fake_model(), ExecutionParams{}, PostParams{}, {});
    session.reset(nullptr);
    LoopParams lp;
    lp.rate_hz = 200;
    lp.max_consecutive_overruns = 0;
    lp.stale_timeout_s = 5.0;
    Loop loop(session, lp);
    Obs obs;
    obs.state[0] = nan_state ? std::nanf("") : -20.0f;  // -20: the fake model's NaN trap
    loop.post_observation(obs.get());
    loop.start();
    sleep_ms(100);
    loop.stop();
    const LoopStats st = loop.stats();
    const std::string want = nan_state ? "fault bad_observation: NaN/Inf in the observation at tick 0"
                                       : "fault bad_output: NaN/Inf in the model output at tick 0";
    if (st.safe_stop_reason != want) std::printf("  reason '%s'\n", st.safe_stop_reason.c_str());
    CHECK(st.safe_stopped && st.faults >= 1 && st.safe_stop_reason == want);
    Command cmd;
    CHECK(loop.latest_command(&cmd) && cmd.status == Status::safe_stop);
  }
}

TEST(nan_output_is_a_fault_that_holds) {
  Session session(fake_model(), ExecutionParams{}, PostParams{}, {});
  session.reset(nullptr);
  Obs obs;
  float good[2], held[2];
  CHECK(session.step(obs.get(), good, nullptr) == Status::ok);
  obs.state[0] = -20.0f;
  CHECK(session.step(obs.get(), held, nullptr) == Status::bad_output);
  CHECK(held[0] == good[0] && held[1] == good[1]);
  obs.state[0] = std::nanf("");
  CHECK(session.step(obs.get(), held, nullptr) == Status::bad_observation);
  Obs wrong;
  wrong.view.width = 5;
  CHECK(session.step(wrong.get(), held, nullptr) == Status::bad_observation);
}

TEST(async_loop_merges_chunks_from_the_inference_thread) {
  ExecutionParams ep;
  ep.mode = ExecMode::async;
  ep.n_action_steps = 4;
  Session session(fake_model(3000), ep, PostParams{}, {});  // 3 ms inference at 5 ms ticks, chunks of 40 ms
  session.reset(nullptr);
  LoopParams lp;
  lp.rate_hz = 200;
  lp.max_consecutive_overruns = 0;
  lp.stale_timeout_s = 5.0;
  Loop loop(session, lp);
  Obs obs;
  loop.post_observation(obs.get());
  loop.start();
  sleep_ms(300);
  loop.stop();
  const LoopStats st = loop.stats();
  CHECK(st.inferences >= 3 && st.last_inference_ns >= 3000000);
  CHECK(!st.safe_stopped);
  Command cmd;
  CHECK(loop.latest_command(&cmd) && cmd.status == Status::ok);
}

TEST(ticks_do_not_allocate) {
  for (const bool keypoints : {false, true})
    for (ExecMode mode : {ExecMode::ensemble, ExecMode::chunk, ExecMode::async}) {
      ExecutionParams ep;
      ep.mode = mode;
      ep.n_action_steps = 4;
      ep.latency_ticks = mode == ExecMode::async ? 2 : 0;
      Session session(keypoints ? keypoint_model() : fake_model(), ep, PostParams{}, {});
      session.reset(nullptr);
      Obs obs;
      KeypointObs kp;
      const Observation o = keypoints ? kp.get() : obs.get();
      float cmd[2];
      const long before = g_allocations.load();
      for (int i = 0; i < 50; ++i) session.step(o, cmd, nullptr);
      CHECK(g_allocations.load() == before);  // Session::step
      LoopParams lp;
      lp.rate_hz = 1000;
      lp.max_consecutive_overruns = 0;
      lp.stale_timeout_s = 5.0;
      Loop loop(session, lp);
      loop.post_observation(o);
      loop.start();
      sleep_ms(20);  // threads are up; from here on only the ticks, posts (and the inference thread) run
      const int64_t ticks0 = loop.stats().ticks;  // stats() may allocate: called outside the window
      const long start = g_allocations.load();
      for (int i = 0; i < 10; ++i) {
        CHECK(loop.post_observation(o) == Status::ok);  // the inbox copy allocates nothing either
        sleep_ms(10);
      }
      const long during = g_allocations.load() - start;
      const int64_t ticks = loop.stats().ticks - ticks0;
      loop.stop();
      CHECK(ticks > 10);
      CHECK(during == 0);
      if (during != 0) std::printf("  %ld allocations in %lld ticks\n", during, static_cast<long long>(ticks));
    }
}

TEST(zero_cameras_and_two_vectors_reach_the_model) {
  Session session(keypoint_model(), ExecutionParams{}, PostParams{}, {});
  session.reset(nullptr);
  KeypointObs kp;
  float cmd[2];
  CHECK(session.step(kp.get(), cmd, nullptr) == Status::ok);
  CHECK_NEAR(cmd[0], kp.expected(0, 0), 1e-6);  // the first tick's action is row 0 of the first chunk
  CHECK_NEAR(cmd[1], kp.expected(0, 1), 1e-6);
  kp.keypoints[1] = 300.0f;  // only the second vector changes: the next chunk must see it
  CHECK(session.step(kp.get(), cmd, nullptr) == Status::ok);
  // ensemble (m = 0.01) of row 1 of the first chunk (weight 1) and row 0 of the second (weight exp(-0.01))
  const double w0 = 1.0, w1 = std::exp(-0.01);
  CHECK_NEAR(cmd[1], (w0 * (-0.25f + 101.0f + 0.01f) + w1 * (-0.25f + 300.0f)) / (w0 + w1), 1e-4);

  // The loop: inbox slots hold both vectors; the command is the chunk row of each executed tick.
  Session s2(keypoint_model(), ExecutionParams{}, PostParams{}, {});
  s2.reset(nullptr);
  LoopParams lp;
  lp.rate_hz = 100;
  lp.max_consecutive_overruns = 0;
  lp.stale_timeout_s = 5.0;
  Loop loop(s2, lp);
  KeypointObs kp2;
  CHECK(loop.post_observation(kp2.get()) == Status::ok);
  loop.start();
  sleep_ms(100);
  loop.stop();
  Command c;
  CHECK(loop.latest_command(&c) && c.status == Status::ok && c.has_values);
  std::vector<float> chunk(16);
  for (int j = 0; j < 8; ++j)
    for (int a = 0; a < 2; ++a) chunk[j * 2 + a] = kp2.expected(j, a);
  Ensembler ref(8, 2, ExecutionParams{});
  float want[2] = {0, 0};
  for (int64_t t : loop.timings(stage_tick)) {
    ref.advance(t - ref.tick());
    ref.push(chunk.data(), t);
    ref.update(want);
  }
  CHECK_NEAR(c.values[0], want[0], 1e-5);
  CHECK_NEAR(c.values[1], want[1], 1e-5);
}

TEST(a_vector_of_the_wrong_size_is_a_bad_observation) {
  Session session(keypoint_model(), ExecutionParams{}, PostParams{}, {});
  const float initial[2] = {1.0f, 2.0f};
  session.reset(initial);
  KeypointObs kp;
  float cmd[2];
  kp.views[1].dim = 15;
  CHECK(session.step(kp.get(), cmd, nullptr) == Status::bad_observation);
  CHECK(cmd[0] == 1.0f && cmd[1] == 2.0f);  // the held command
  Observation one = kp.get();
  one.n_vectors = 1;  // a vector missing
  CHECK(session.step(one, cmd, nullptr) == Status::bad_observation);
  kp.views[1].dim = 16;
  kp.views[1].data = nullptr;
  CHECK(session.step(kp.get(), cmd, nullptr) == Status::bad_observation);
  LoopParams lp;
  Loop loop(session, lp);
  KeypointObs wrong;
  wrong.views[0].dim = 3;
  CHECK(loop.post_observation(wrong.get()) == Status::bad_observation);
  Observation missing = wrong.get();
  missing.n_vectors = 0;
  CHECK(loop.post_observation(missing) == Status::bad_observation);
  KeypointObs good;
  CHECK(loop.post_observation(good.get()) == Status::ok);
}

TEST(nan_in_any_vector_is_a_bad_observation) {
  for (const int which : {0, 1}) {
    Session session(keypoint_model(), ExecutionParams{}, PostParams{}, {});
    session.reset(nullptr);
    KeypointObs kp;
    float good[2], held[2];
    CHECK(session.step(kp.get(), good, nullptr) == Status::ok);
    (which == 0 ? kp.state[1] : kp.keypoints[15]) = std::nanf("");
    CHECK(session.step(kp.get(), held, nullptr) == Status::bad_observation);
    CHECK(held[0] == good[0] && held[1] == good[1]);
    (which == 0 ? kp.state[1] : kp.keypoints[15]) = INFINITY;
    CHECK(session.step(kp.get(), held, nullptr) == Status::bad_observation);
  }
  // Through the loop: the fault latches safe_stop and names the status.
  Session session(keypoint_model(), ExecutionParams{}, PostParams{}, {});
  session.reset(nullptr);
  LoopParams lp;
  lp.rate_hz = 200;
  lp.max_consecutive_overruns = 0;
  lp.stale_timeout_s = 5.0;
  Loop loop(session, lp);
  KeypointObs kp;
  kp.keypoints[3] = std::nanf("");
  CHECK(loop.post_observation(kp.get()) == Status::ok);  // posting copies; the tick checks finiteness
  loop.start();
  sleep_ms(100);
  loop.stop();
  const LoopStats st = loop.stats();
  CHECK(st.safe_stopped && st.safe_stop_reason == "fault bad_observation: NaN/Inf in the observation at tick 0");
}

TEST(model_specs_are_validated) {
  ModelSpec s;
  s.output_name = "action";
  s.chunk_size = 4;
  s.action_dim = 2;
  CHECK_THROWS(validate(s));  // no input at all
  s.vectors = {VectorInput{"observation.state", 2}};
  validate(s);
  s.vectors.push_back(VectorInput{"observation.environment_state", 0});
  CHECK_THROWS(validate(s));  // dim 0
  s.vectors.back() = VectorInput{"observation.state", 3};
  CHECK_THROWS(validate(s));  // the same input twice
  s.vectors.back() = VectorInput{"", 3};
  CHECK_THROWS(validate(s));  // no name
}

TEST(loop_params_are_validated) {
  Session session(fake_model(), ExecutionParams{}, PostParams{}, {});
  LoopParams lp;
  lp.rate_hz = 0;
  CHECK_THROWS(Loop(session, lp));
}

TEST_MAIN()
