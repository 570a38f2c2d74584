// Session and Loop unit tests with an in-process fake backend (no ONNX Runtime needed): the loop's commands equal
// the ensembler fed the same chunks, stage timings and histogram are kept, the watchdog latches safe_stop on a
// stale observation and on consecutive overruns, and async inference merges chunks from its own thread.
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

// out[j, a] = state[a] + 0.01 j + image[0] / 255; NaN when state[0] < -10; sleeps `delay_us` per run.
class FakeContext final : public InferContext {
 public:
  FakeContext(const ModelSpec& s, int delay_us) : spec_(s), delay_us_(delay_us) {
    image_.assign(static_cast<size_t>(s.cameras[0].height) * s.cameras[0].width * 3, 0);
    state_.assign(s.state_dim, 0.0f);
    out_.assign(static_cast<size_t>(s.chunk_size) * s.action_dim, 0.0f);
  }
  uint8_t* image_input(int) noexcept override { return image_.data(); }
  float* state_input() noexcept override { return state_.data(); }
  const float* output() const noexcept override { return out_.data(); }
  Status run() noexcept override {
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    for (int j = 0; j < spec_.chunk_size; ++j)
      for (int a = 0; a < spec_.action_dim; ++a)
        out_[j * spec_.action_dim + a] =
            state_[0] < -10.0f ? std::nanf("") : state_[a] + 0.01f * j + image_[0] / 255.0f;
    return Status::ok;
  }

 private:
  ModelSpec spec_;
  int delay_us_;
  std::vector<uint8_t> image_;
  std::vector<float> state_, out_;
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
  s.state_input = "observation.state";
  s.state_dim = 2;
  s.output_name = "action";
  s.chunk_size = 8;
  s.action_dim = 2;
  return std::make_shared<FakeModel>(s, delay_us);
}

struct Obs {
  std::vector<uint8_t> frame = std::vector<uint8_t>(4 * 6 * 3, 51);
  float state[2] = {0.5f, -0.25f};
  ImageView view{frame.data(), 4, 6, 3};
  Observation get(int64_t stamp = 0) { return Observation{&view, 1, state, 2, stamp}; }
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
  for (ExecMode mode : {ExecMode::ensemble, ExecMode::chunk, ExecMode::async}) {
    ExecutionParams ep;
    ep.mode = mode;
    ep.n_action_steps = 4;
    ep.latency_ticks = mode == ExecMode::async ? 2 : 0;
    Session session(fake_model(), ep, PostParams{}, {});
    session.reset(nullptr);
    Obs obs;
    float cmd[2];
    const long before = g_allocations.load();
    for (int i = 0; i < 50; ++i) session.step(obs.get(), cmd, nullptr);
    CHECK(g_allocations.load() == before);  // Session::step
    LoopParams lp;
    lp.rate_hz = 1000;
    lp.max_consecutive_overruns = 0;
    lp.stale_timeout_s = 5.0;
    Loop loop(session, lp);
    loop.post_observation(obs.get());
    loop.start();
    sleep_ms(20);  // threads are up; from here on only the ticks (and the inference thread) run
    const int64_t ticks0 = loop.stats().ticks;  // stats() may allocate: called outside the window
    const long start = g_allocations.load();
    sleep_ms(100);
    const long during = g_allocations.load() - start;
    const int64_t ticks = loop.stats().ticks - ticks0;
    loop.stop();
    CHECK(ticks > 10);
    CHECK(during == 0);
    if (during != 0) std::printf("  %ld allocations in %lld ticks\n", during, static_cast<long long>(ticks));
  }
}

TEST(loop_params_are_validated) {
  Session session(fake_model(), ExecutionParams{}, PostParams{}, {});
  LoopParams lp;
  lp.rate_hz = 0;
  CHECK_THROWS(Loop(session, lp));
}

TEST_MAIN()
