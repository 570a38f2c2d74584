// The only file that includes pybind11: converts between Python and the C++ core (edgeact/runtime.h).
// The GIL is released around inference, loop start/stop, posting and waiting; the loop thread never takes it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "edgeact/runtime.h"

namespace py = pybind11;
using namespace edgeact::rt;

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style>;

py::object* g_log_fn = nullptr;  // deliberately leaked: outlives interpreter teardown ordering

void log_trampoline(LogLevel level, const char* message, void*) {
  py::gil_scoped_acquire gil;
  if (g_log_fn == nullptr || g_log_fn->is_none()) return;
  try {
    (*g_log_fn)(static_cast<int>(level), message);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("edgeact.runtime._core log callback");
  }
}

// Views over Python arrays; the arrays stay referenced by the caller for the duration of the call.
// Frames in ModelSpec::cameras order, vectors in ModelSpec::vectors order.
struct ObsViews {
  std::vector<U8Array> frames;
  std::vector<F32Array> vectors;
  std::vector<ImageView> views;
  std::vector<VectorView> vector_views;
  Observation obs;
  ObsViews(const std::vector<U8Array>& f, const std::vector<F32Array>& v, int64_t stamp) : frames(f), vectors(v) {
    for (const auto& a : frames) {
      if (a.ndim() != 3)
        throw py::value_error("frames must be (H, W, C) uint8 arrays, got ndim " + std::to_string(a.ndim()));
      views.push_back(ImageView{a.data(), static_cast<int>(a.shape(0)), static_cast<int>(a.shape(1)),
                                static_cast<int>(a.shape(2))});
    }
    for (const auto& a : vectors) {
      if (a.ndim() != 1)
        throw py::value_error("vectors must be 1-D float32 arrays, got ndim " + std::to_string(a.ndim()));
      vector_views.push_back(VectorView{a.size() ? a.data() : nullptr, static_cast<int>(a.size())});
    }
    obs = Observation{views.data(), static_cast<int>(views.size()), vector_views.data(),
                      static_cast<int>(vector_views.size()), stamp};
  }
};

py::object to_array_or_none(bool has, const float* data, int n) {
  if (!has) return py::none();
  F32Array out(n);
  std::memcpy(out.mutable_data(), data, sizeof(float) * n);
  return std::move(out);
}

const float* chunk_ptr(const F32Array& chunk, const Ensembler& e) {
  const py::ssize_t n = static_cast<py::ssize_t>(e.chunk_size()) * e.action_dim();
  if (chunk.size() != n)
    throw py::value_error("chunk must have chunk_size * action_dim = " + std::to_string(n) + " values");
  return chunk.data();
}

py::tuple command_tuple(const Command& c) {
  const int n = static_cast<int>(c.values.size());
  return py::make_tuple(c.seq, c.tick, to_array_or_none(c.has_values, c.values.data(), n),
                        static_cast<int>(c.status), c.stamp_ns);
}

void bind_params(py::module_& m) {
  py::enum_<Layout>(m, "Layout").value("NHWC", Layout::nhwc).value("NCHW", Layout::nchw);
  py::enum_<BackendKind>(m, "BackendKind")
      .value("ONNXRUNTIME", BackendKind::onnxruntime)
      .value("TENSORRT", BackendKind::tensorrt);
  py::enum_<ExecMode>(m, "ExecMode")
      .value("ENSEMBLE", ExecMode::ensemble)
      .value("CHUNK", ExecMode::chunk)
      .value("ASYNC", ExecMode::async);
  py::class_<CameraInput>(m, "CameraInput")
      .def(py::init<>())
      .def_readwrite("name", &CameraInput::name)
      .def_readwrite("input_name", &CameraInput::input_name)
      .def_readwrite("height", &CameraInput::height)
      .def_readwrite("width", &CameraInput::width)
      .def_readwrite("channels", &CameraInput::channels)
      .def_readwrite("layout", &CameraInput::layout);
  py::class_<VectorInput>(m, "VectorInput")
      .def(py::init<>())
      .def(py::init([](std::string input_name, int dim) { return VectorInput{std::move(input_name), dim}; }),
           py::arg("input_name"), py::arg("dim"))
      .def_readwrite("input_name", &VectorInput::input_name)
      .def_readwrite("dim", &VectorInput::dim);
  py::class_<ModelSpec>(m, "ModelSpec")
      .def(py::init<>())
      .def_readwrite("cameras", &ModelSpec::cameras)
      .def_readwrite("vectors", &ModelSpec::vectors)
      .def_readwrite("output_name", &ModelSpec::output_name)
      .def_readwrite("chunk_size", &ModelSpec::chunk_size)
      .def_readwrite("action_dim", &ModelSpec::action_dim);
  py::class_<ModelParams>(m, "ModelParams")
      .def(py::init(&default_model_params))
      .def_readwrite("backend", &ModelParams::backend)
      .def_readwrite("intra_op_threads", &ModelParams::intra_op_threads)
      .def_readwrite("warmup_runs", &ModelParams::warmup_runs)
      .def_readwrite("ort_config", &ModelParams::ort_config)
      .def_readwrite("release_load_memory", &ModelParams::release_load_memory);
  py::class_<ExecutionParams>(m, "ExecutionParams")
      .def(py::init(&default_execution_params))
      .def_readwrite("mode", &ExecutionParams::mode)
      .def_readwrite("temporal_ensemble_coeff", &ExecutionParams::temporal_ensemble_coeff)
      .def_readwrite("n_action_steps", &ExecutionParams::n_action_steps)
      .def_readwrite("latency_ticks", &ExecutionParams::latency_ticks);
  py::class_<PostParams>(m, "PostParams")
      .def(py::init(&default_post_params))
      .def_readwrite("lower", &PostParams::lower)
      .def_readwrite("upper", &PostParams::upper)
      .def_readwrite("max_delta", &PostParams::max_delta);
  py::class_<LoopParams>(m, "LoopParams")
      .def(py::init(&default_loop_params))
      .def_readwrite("rate_hz", &LoopParams::rate_hz)
      .def_readwrite("stale_timeout_s", &LoopParams::stale_timeout_s)
      .def_readwrite("max_consecutive_overruns", &LoopParams::max_consecutive_overruns)
      .def_readwrite("stop_on_fault", &LoopParams::stop_on_fault)
      .def_readwrite("realtime_priority", &LoopParams::realtime_priority)
      .def_readwrite("lock_memory", &LoopParams::lock_memory)
      .def_readwrite("cpu_affinity", &LoopParams::cpu_affinity)
      .def_readwrite("spin_us", &LoopParams::spin_us)
      .def_readwrite("timing_capacity", &LoopParams::timing_capacity);
}

void bind_pieces(py::module_& m) {
  py::class_<Ensembler>(m, "Ensembler")
      .def(py::init<int, int, const ExecutionParams&>())
      .def("reset", &Ensembler::reset)
      .def("wants_chunk", &Ensembler::wants_chunk)
      .def("begin_request", &Ensembler::begin_request)
      .def("cancel_request", &Ensembler::cancel_request)
      .def("push", [](Ensembler& e, const F32Array& chunk, int64_t origin) {
        return static_cast<int>(e.push(chunk_ptr(chunk, e), origin));
      })
      .def("update", [](Ensembler& e) {
        std::vector<float> out(static_cast<size_t>(e.action_dim()));
        const bool have = e.update(out.data());
        return to_array_or_none(have, out.data(), e.action_dim());
      })
      .def("advance", &Ensembler::advance)
      .def_property_readonly("tick", &Ensembler::tick)
      .def_property_readonly("in_flight", &Ensembler::in_flight);
  py::class_<PostProcessor>(m, "PostProcessor")
      .def(py::init<int, const PostParams&>())
      .def("reset",
           [](PostProcessor& p, std::optional<F32Array> initial) { p.reset(initial ? initial->data() : nullptr); },
           py::arg("initial") = py::none())
      .def("apply", [](PostProcessor& p, std::optional<F32Array> action) {
        const int a = p.action_dim();
        std::vector<float> out(static_cast<size_t>(a));
        if (action && action->size() != a) throw py::value_error("action has the wrong length");
        const Status st = p.apply(action ? action->data() : nullptr, out.data());
        return py::make_tuple(to_array_or_none(p.has_command(), out.data(), a), static_cast<int>(st));
      });
  m.def("resize", [](const U8Array& frame, int h, int w, Layout layout) {
    if (frame.ndim() != 3) throw py::value_error("frame must be (H, W, C)");
    const int c = static_cast<int>(frame.shape(2));
    FrameResizer r(static_cast<int>(frame.shape(0)), static_cast<int>(frame.shape(1)), h, w, c, layout);
    U8Array out = layout == Layout::nhwc ? U8Array({h, w, c}) : U8Array({c, h, w});
    r.run(frame.data(), out.mutable_data());
    return out;
  }, py::arg("frame"), py::arg("height"), py::arg("width"), py::arg("layout") = Layout::nhwc);
}

void bind_model(py::module_& m) {
  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def_static("load", [](const std::string& path, const ModelSpec& spec, const ModelParams& params) {
        std::shared_ptr<const Model> model;
        {
          py::gil_scoped_release nogil;
          model = Model::load(path, spec, params);
        }
        return std::const_pointer_cast<Model>(model);
      })
      .def_property_readonly("spec", &Model::spec)
      .def_property_readonly("backend", &Model::backend)
      .def("infer", [](const Model& model, const std::vector<U8Array>& frames, const std::vector<F32Array>& vectors) {
        // Debug path (allocates): resize every frame into a fresh context and run once.
        ObsViews ov(frames, vectors, 0);
        const ModelSpec& spec = model.spec();
        if (ov.obs.n_images != static_cast<int>(spec.cameras.size()) ||
            ov.obs.n_vectors != static_cast<int>(spec.vectors.size()))
          throw py::value_error("infer: wrong number of frames or vectors");
        for (size_t v = 0; v < spec.vectors.size(); ++v)
          if (ov.vector_views[v].dim != spec.vectors[v].dim)
            throw py::value_error("infer: wrong size for vector " + spec.vectors[v].input_name);
        auto ctx = model.create_context();
        for (size_t c = 0; c < spec.cameras.size(); ++c) {
          const auto& cam = spec.cameras[c];
          if (ov.views[c].channels != cam.channels)
            throw py::value_error("infer: wrong channel count for camera " + cam.name);
          FrameResizer(ov.views[c].height, ov.views[c].width, cam.height, cam.width, cam.channels, cam.layout)
              .run(ov.views[c].data, ctx->image_input(static_cast<int>(c)));
        }
        for (size_t v = 0; v < spec.vectors.size(); ++v)
          std::memcpy(ctx->vector_input(static_cast<int>(v)), ov.vector_views[v].data,
                      sizeof(float) * spec.vectors[v].dim);
        Status st;
        {
          py::gil_scoped_release nogil;
          st = ctx->run();
        }
        if (st != Status::ok) throw std::runtime_error("inference failed");
        F32Array out({1, spec.chunk_size, spec.action_dim});
        std::memcpy(out.mutable_data(), ctx->output(), sizeof(float) * spec.chunk_size * spec.action_dim);
        return out;
      });
}

void bind_session(py::module_& m) {
  py::class_<Session>(m, "Session")
      .def(py::init([](std::shared_ptr<Model> model, const ExecutionParams& e, const PostParams& p,
                       const std::vector<std::pair<int, int>>& shapes) {
             std::vector<FrameShape> fs;
             for (const auto& s : shapes) fs.push_back(FrameShape{s.first, s.second});
             return std::make_unique<Session>(model, e, p, fs);
           }))
      .def("reset", [](Session& s, std::optional<F32Array> initial) {
        if (initial && initial->size() != s.model().spec().action_dim)
          throw py::value_error("initial_command has the wrong length");
        s.reset(initial ? initial->data() : nullptr);
      }, py::arg("initial") = py::none())
      .def("step", [](Session& s, const std::vector<U8Array>& frames, const std::vector<F32Array>& vectors) {
        ObsViews ov(frames, vectors, 0);
        const int a = s.model().spec().action_dim;
        std::vector<float> out(static_cast<size_t>(a));
        StepTimings tm;
        Status st;
        {
          py::gil_scoped_release nogil;
          st = s.step(ov.obs, out.data(), &tm);
        }
        return py::make_tuple(to_array_or_none(s.has_command(), out.data(), a), static_cast<int>(st),
                              py::make_tuple(tm.pre_ns, tm.infer_ns, tm.ensemble_ns, tm.post_ns, tm.total_ns));
      })
      .def_property_readonly("tick", &Session::tick)
      .def_property_readonly("has_command", &Session::has_command);
}

void bind_loop(py::module_& m) {
  py::class_<Loop>(m, "Loop")
      .def(py::init<Session&, const LoopParams&>(), py::keep_alive<1, 2>())
      .def("start", &Loop::start)
      .def("stop", &Loop::stop, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("running", &Loop::running)
      .def("post_observation", [](Loop& loop, const std::vector<U8Array>& frames, const std::vector<F32Array>& vectors,
                                  int64_t stamp) {
        ObsViews ov(frames, vectors, stamp);
        py::gil_scoped_release nogil;
        return static_cast<int>(loop.post_observation(ov.obs));
      })
      .def("latest_command", [](const Loop& loop) -> py::object {
        Command c;
        if (!loop.latest_command(&c)) return py::none();
        return command_tuple(c);
      })
      .def("wait_command", [](const Loop& loop, int64_t after_seq, double timeout_s) -> py::object {
        {
          py::gil_scoped_release nogil;
          const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
          while (loop.published_seq() <= after_seq && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        Command c;
        if (loop.published_seq() <= after_seq || !loop.latest_command(&c)) return py::none();
        return command_tuple(c);
      })
      .def("stats", [](const Loop& loop) {
        const LoopStats s = loop.stats();
        py::dict d;
        d["ticks"] = s.ticks;
        d["overruns"] = s.overruns;
        d["skipped_ticks"] = s.skipped_ticks;
        d["inferences"] = s.inferences;
        d["holds"] = s.holds;
        d["faults"] = s.faults;
        d["max_consecutive_overruns"] = s.max_consecutive_overruns;
        d["last_inference_ns"] = s.last_inference_ns;
        d["safe_stopped"] = s.safe_stopped;
        d["safe_stop_reason"] = s.safe_stop_reason;
        d["realtime_warnings"] = s.realtime_warnings;
        return d;
      })
      .def("timings", [](const Loop& loop, int stage) {
        const auto v = loop.timings(stage);
        py::array_t<int64_t> out(static_cast<py::ssize_t>(v.size()));
        if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(int64_t));
        return out;
      })
      .def("jitter_histogram", [](const Loop& loop) {
        py::array_t<int64_t> edges(kJitterBins), counts(kJitterBins);
        const auto h = loop.jitter_histogram();
        for (int i = 0; i < kJitterBins; ++i) {
          edges.mutable_at(i) = kJitterEdgesUs[i];
          counts.mutable_at(i) = h[i];
        }
        return py::make_tuple(edges, counts);
      });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgeact real-time runtime core (see cpp_ext/include/edgeact/runtime.h)";
  m.attr("__version__") = "0.1.0";
  m.def("init_onnxruntime", &init_onnxruntime, py::arg("library_path"));
  m.def("onnxruntime_ready", &onnxruntime_ready);
  m.def("tensorrt_compiled", &tensorrt_compiled);
  m.def("status_name", [](int s) { return std::string(status_name(static_cast<Status>(s))); });
  m.def("set_log_callback", [](py::object fn) {
    if (g_log_fn == nullptr) g_log_fn = new py::object();
    *g_log_fn = std::move(fn);
    set_log_callback(g_log_fn->is_none() ? nullptr : &log_trampoline, nullptr);
  });
  m.attr("STAGES") = py::make_tuple("pre", "infer", "ensemble", "post", "write", "total", "lateness", "tick");
  bind_params(m);
  bind_pieces(m);
  bind_model(m);
  bind_session(m);
  bind_loop(m);
}
