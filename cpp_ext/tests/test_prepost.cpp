// Pre/post-processing unit tests: resize tables (identity, constant, a hand-computed upsample), layouts, and the
// post-processor's order of operations and NaN guard.
#include <cmath>
#include <cstdint>
#include <vector>

#include "edgeact/runtime.h"
#include "harness.h"

using namespace edgeact::rt;

TEST(resize_identity_copies) {
  std::vector<uint8_t> src(4 * 5 * 3), dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7);
  FrameResizer(4, 5, 4, 5, 3, Layout::nhwc).run(src.data(), dst.data());
  CHECK(src == dst);
}

TEST(resize_upsample_by_two_by_hand) {
  // One row [0, 100] -> width 4: source x = (d + 0.5) / 2 - 0.5 = -0.25 (clamped 0), 0.25, 0.75, 1.25 (edge).
  const uint8_t src[2] = {0, 100};
  uint8_t dst[4];
  FrameResizer(1, 2, 1, 4, 1, Layout::nhwc).run(src, dst);
  CHECK(dst[0] == 0 && dst[1] == 25 && dst[2] == 75 && dst[3] == 100);
}

TEST(resize_constant_stays_constant_and_nchw_layout) {
  std::vector<uint8_t> src(9 * 13 * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(10 + i % 3);  // channel c = 10 + c
  std::vector<uint8_t> dst(5 * 6 * 3);
  FrameResizer(9, 13, 5, 6, 3, Layout::nchw).run(src.data(), dst.data());
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 30; ++i) CHECK(dst[c * 30 + i] == 10 + c);
}

TEST(resize_rejects_bad_sizes) { CHECK_THROWS(FrameResizer(0, 5, 4, 5, 3, Layout::nhwc)); }

TEST(post_clamps_change_then_limits) {
  PostParams p;
  p.lower = {-1.0f, -1.0f};
  p.upper = {1.0f, 0.05f};
  p.max_delta = {0.1f, 0.5f};
  PostProcessor post(2, p);
  float out[2];
  const float init[2] = {0.0f, 0.0f};
  post.reset(init);
  const float a[2] = {5.0f, 0.3f};
  CHECK(post.apply(a, out) == Status::ok);
  CHECK_NEAR(out[0], 0.1, 1e-7);   // max change
  CHECK_NEAR(out[1], 0.05, 1e-7);  // then the joint limit
}

TEST(post_nan_guard_holds) {
  PostProcessor post(2, PostParams{});
  float out[2] = {-9, -9};
  post.reset(nullptr);
  CHECK(post.apply(nullptr, out) == Status::hold && !post.has_command() && out[0] == -9);
  const float a[2] = {0.25f, 0.5f};
  CHECK(post.apply(a, out) == Status::ok);
  const float bad[2] = {std::nanf(""), 1.0f};
  out[0] = out[1] = 0;
  CHECK(post.apply(bad, out) == Status::bad_output);
  CHECK(out[0] == 0.25f && out[1] == 0.5f);
  const float inf[2] = {1.0f, INFINITY};
  CHECK(post.apply(inf, out) == Status::bad_output && out[1] == 0.5f);
}

TEST(post_params_are_validated) {
  PostParams p;
  p.max_delta = {0.1f};
  CHECK_THROWS(PostProcessor(2, p));
  PostParams q;
  q.lower = {1.0f};
  q.upper = {0.0f};
  CHECK_THROWS(PostProcessor(1, q));
}

TEST_MAIN()
