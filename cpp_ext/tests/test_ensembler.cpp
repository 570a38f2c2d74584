// Ensembler unit tests: the offline formula of docs/design.md, exact zeros, chunk and async modes, statuses.
#include <cmath>
#include <random>

#include "edgeact/runtime.h"
#include "harness.h"

using namespace edgeact::rt;

namespace {
std::vector<std::vector<float>> random_chunks(int n, int k, int a, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<std::vector<float>> out(n, std::vector<float>(static_cast<size_t>(k) * a));
  for (auto& c : out)
    for (auto& v : c) v = dist(gen);
  return out;
}
}  // namespace

TEST(ensemble_matches_offline_formula) {
  const int k = 7, a = 3, ticks = 40;
  for (double m : {0.01, 0.0, 0.5}) {
    ExecutionParams p;
    p.temporal_ensemble_coeff = m;
    Ensembler e(k, a, p);
    auto chunks = random_chunks(ticks, k, a, 1);
    std::vector<float> out(a);
    for (int t = 0; t < ticks; ++t) {
      CHECK(e.wants_chunk());
      CHECK(e.push(chunks[t].data(), t) == Status::ok);
      CHECK(e.update(out.data()));
      const int first = t - k + 1 > 0 ? t - k + 1 : 0;
      for (int c = 0; c < a; ++c) {
        double num = 0, den = 0;
        for (int s = first; s <= t; ++s) {
          const double w = std::exp(-m * (s - first));  // i = 0 is the oldest chunk covering t
          num += w * chunks[s][(t - s) * a + c];
          den += w;
        }
        CHECK_NEAR(out[c], num / den, 1e-6);
      }
    }
  }
}

TEST(exact_zero_predictions_count) {
  ExecutionParams p;
  Ensembler e(4, 1, p);
  std::vector<float> zeros(4, 0.0f), ones(4, 1.0f);
  float out = -1;
  e.push(zeros.data(), 0);
  CHECK(e.update(&out) && out == 0.0f);
  e.push(ones.data(), 1);
  CHECK(e.update(&out));
  CHECK_NEAR(out, std::exp(-0.01) / (1.0 + std::exp(-0.01)), 1e-7);
}

TEST(chunk_mode_executes_n_steps) {
  ExecutionParams p;
  p.mode = ExecMode::chunk;
  p.n_action_steps = 3;
  Ensembler e(5, 1, p);
  auto chunks = random_chunks(12, 5, 1, 2);
  float out;
  std::vector<int> inferred;
  for (int t = 0; t < 12; ++t) {
    if (e.wants_chunk()) {
      inferred.push_back(t);
      e.push(chunks[t].data(), t);
    }
    CHECK(e.update(&out));
    const int s = (t / 3) * 3;
    CHECK(out == chunks[s][t - s]);
  }
  CHECK((inferred == std::vector<int>{0, 3, 6, 9}));
}

TEST(async_offsets_and_hold) {
  ExecutionParams p;
  p.mode = ExecMode::async;
  p.n_action_steps = 6;
  Ensembler e(6, 1, p);
  std::vector<float> chunk = {0, 1, 2, 3, 4, 5};
  float out;
  CHECK(e.wants_chunk());
  CHECK(e.begin_request() == 0);
  CHECK(!e.wants_chunk());  // one request in flight
  for (int i = 0; i < 3; ++i) CHECK(!e.update(&out));
  CHECK(e.push(chunk.data(), 0) == Status::ok);  // ready at tick 3: entries 0..2 are past
  CHECK(e.update(&out) && out == 3.0f);
  CHECK(e.update(&out) && out == 4.0f);
  CHECK(e.update(&out) && out == 5.0f);
  CHECK(!e.update(&out));  // used up: hold
  CHECK(e.wants_chunk());
}

TEST(push_statuses_and_reset) {
  ExecutionParams p;
  Ensembler e(3, 2, p);
  std::vector<float> ok(6, 0.5f), bad(6, 0.5f);
  bad[4] = std::nanf("");
  CHECK(e.push(bad.data(), 0) == Status::bad_output);
  CHECK(e.push(ok.data(), 0) == Status::ok);
  CHECK(e.push(ok.data(), 0) == Status::invalid);
  CHECK(e.push(ok.data(), 3) == Status::invalid);
  e.advance(2);
  CHECK(e.tick() == 2);
  e.reset();
  float out[2];
  CHECK(e.tick() == 0 && !e.update(out));
}

TEST(params_are_validated) {
  ExecutionParams p;
  p.n_action_steps = 9;
  CHECK_THROWS(Ensembler(8, 2, p));
  CHECK_THROWS(Ensembler(0, 2, ExecutionParams{}));
}

TEST_MAIN()
