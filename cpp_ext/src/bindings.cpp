// The only file that includes pybind11: converts between Python and the C++ core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgeact real-time runtime core";
  m.attr("__version__") = "0.1.0";
}
